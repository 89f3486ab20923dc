"""Ids: 32 hex characters, unique, ordered by creation, carrying their creation time."""

from __future__ import annotations

import re
import threading
import time

from backpackflow.ids import id_time, new_id


def test_an_id_is_32_hex_characters_carrying_its_creation_time():
    before = time.time()
    identifier = new_id()
    after = time.time()
    assert re.fullmatch(r"[0-9a-f]{32}", identifier)
    assert int(before * 1000) / 1000 <= id_time(identifier) <= after


def test_ids_are_unique_and_sort_in_creation_order_across_milliseconds():
    made = []
    for _ in range(5):
        made.extend(new_id() for _ in range(2000))
        time.sleep(0.002)  # the next batch starts in a later millisecond
    assert len(set(made)) == len(made)
    assert sorted(made) == made
    assert len({i[:12] for i in made}) >= 5  # the time part moved on


def test_ids_made_by_concurrent_threads_never_repeat():
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything)
    for out in made:
        assert sorted(out) == out
