"""Run leases with fencing tokens (``backpackflow_store_sql.leases``), on SQLite and PostgreSQL:
one holder per run, a higher token for every new holder, and a stale holder's writes refused
with nothing of them stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backpackflow_store_sql import InvalidData, LeaseLost, NotFound, SqlRunStore, StoreConfigError
from backpackflow_store_sql.models import WorkflowRun

CHECKPOINT = [b'{"op":"position","step":1}']


def _expire(store: SqlRunStore, run_id: str) -> None:
    """Make the run's lease expired without waiting: its expiry an hour in the past."""
    past = datetime.now(UTC) - timedelta(hours=1)
    with store.engine.begin() as connection:
        connection.execute(
            WorkflowRun.__table__.update()
            .where(WorkflowRun.__table__.c.id == run_id)
            .values(lease_expires_at=past)
        )


def _new_run(store: SqlRunStore) -> str:
    workflow = store.create_workflow("leased", {"nodes": [], "edges": []})
    return str(store.create_run(workflow["id"], {})["id"])


def test_acquire_renew_release(store: SqlRunStore, run: dict[str, Any]) -> None:
    assert store.get_lease(run["id"]) == {
        "run_id": run["id"],
        "owner": None,
        "token": 0,
        "expires_at": None,
        "expired": False,
    }
    lease = store.acquire_lease(run["id"], "worker-a", ttl=30)
    assert lease is not None and (lease.run_id, lease.owner, lease.token) == (
        run["id"],
        "worker-a",
        1,
    )
    stored = store.get_lease(run["id"])
    assert (stored["owner"], stored["token"], stored["expired"]) == ("worker-a", 1, False)
    assert datetime.fromisoformat(stored["expires_at"]) == lease.expires_at

    # held: nobody else gets it, nor the holder itself (it renews instead)
    assert store.acquire_lease(run["id"], "worker-b", ttl=30) is None
    assert store.acquire_lease(run["id"], "worker-a", ttl=30) is None

    renewed = store.renew_lease(run["id"], lease.token, ttl=600)
    assert (renewed.owner, renewed.token) == ("worker-a", 1)
    assert renewed.expires_at > lease.expires_at

    store.release_lease(run["id"], lease.token)
    assert store.get_lease(run["id"])["owner"] is None
    assert store.get_lease(run["id"])["token"] == 1  # kept: the next holder's is higher
    with pytest.raises(LeaseLost, match="was released"):
        store.renew_lease(run["id"], lease.token, ttl=30)

    again = store.acquire_lease(run["id"], "worker-b", ttl=30)
    assert again is not None and (again.owner, again.token) == ("worker-b", 2)


def test_an_expired_lease_is_taken_over_with_a_higher_token(
    store: SqlRunStore, run: dict[str, Any]
) -> None:
    first = store.acquire_lease(run["id"], "worker-a", ttl=30)
    assert first is not None
    _expire(store, run["id"])
    assert store.get_lease(run["id"])["expired"] is True

    second = store.acquire_lease(run["id"], "worker-b", ttl=30)
    assert second is not None and (second.owner, second.token) == ("worker-b", 2)
    assert store.get_lease(run["id"])["expired"] is False

    with pytest.raises(LeaseLost) as lost:
        store.renew_lease(run["id"], first.token, ttl=30)
    assert (lost.value.run_id, lost.value.given, lost.value.current) == (run["id"], 1, 2)
    assert str(lost.value) == (
        f"run {run['id']!r}: lease token 1 is stale; the current token is 2 "
        "(held by 'worker-b'); stop driving this run"
    )
    with pytest.raises(LeaseLost):
        store.release_lease(run["id"], first.token)
    assert store.get_lease(run["id"])["owner"] == "worker-b"  # the failed release changed nothing


def test_an_expired_lease_not_taken_over_still_fences_with_its_token(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    lease = store.acquire_lease(run["id"], "worker-a", ttl=30)
    assert lease is not None
    _expire(store, run["id"])
    # nobody else has written: the holder's writes and heartbeat still count
    store.append_events(run["id"], [trace(run["id"]).event("run_start")], lease_token=lease.token)
    assert store.renew_lease(run["id"], lease.token, ttl=30).token == 1
    assert store.get_lease(run["id"])["expired"] is False


def test_a_stale_holders_writes_are_refused_and_nothing_of_them_is_stored(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    run_id = run["id"]
    events = trace(run_id)
    stale = store.acquire_lease(run_id, "worker-a", ttl=30)
    assert stale is not None
    _expire(store, run_id)
    current = store.acquire_lease(run_id, "worker-b", ttl=30)
    assert current is not None

    with pytest.raises(LeaseLost, match="lease token 1 is stale; the current token is 2"):
        store.mark_running(run_id, lease_token=stale.token)
    assert store.get_run(run_id)["status"] == "queued"
    with pytest.raises(LeaseLost):
        store.append_events(
            run_id, [events.event("run_start")], checkpoint=CHECKPOINT, lease_token=stale.token
        )
    with pytest.raises(LeaseLost):  # a checkpoint alone is fenced too
        store.append_events(run_id, [], checkpoint=CHECKPOINT, lease_token=stale.token)
    assert store.count_events(run_id) == 0
    assert store.checkpoint_size(run_id) == 0

    store.mark_running(run_id, lease_token=current.token)
    start = events.event("run_start")
    store.append_events(run_id, [start], checkpoint=CHECKPOINT, lease_token=current.token)
    assert store.count_events(run_id) == 1
    assert store.checkpoint_size(run_id) == len(CHECKPOINT[0])

    with pytest.raises(LeaseLost):
        store.pause_run(run_id, lease_token=stale.token)
    with pytest.raises(LeaseLost):
        store.finish_run(run_id, "failed", "a stale worker's verdict", lease_token=stale.token)
    with pytest.raises(LeaseLost):
        store.append_many(
            {run_id: [events.event("run_end")]},
            checkpoints={run_id: CHECKPOINT},
            lease_tokens={run_id: stale.token},
        )
    assert store.get_run(run_id)["status"] == "running"
    assert store.get_run(run_id)["error_summary"] is None
    assert [e["id"] for e in store.get_trace(run_id)] == [start["id"]]
    assert store.checkpoint_size(run_id) == len(CHECKPOINT[0])

    finished = store.finish_run(run_id, "succeeded", lease_token=current.token)
    assert finished["status"] == "succeeded"


def test_a_released_lease_fences_its_former_holder(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    lease = store.acquire_lease(run["id"], "worker-a", ttl=30)
    assert lease is not None
    store.release_lease(run["id"], lease.token)
    with pytest.raises(LeaseLost, match="the lease of token 1 was released"):
        store.append_events(run["id"], [trace(run["id"]).event("run_start")], lease_token=1)
    assert store.count_events(run["id"]) == 0


def test_one_stale_token_refuses_a_whole_batch_of_runs(store: SqlRunStore, trace: Any) -> None:
    leased, other = _new_run(store), _new_run(store)
    stale = store.acquire_lease(leased, "worker-a", ttl=30)
    assert stale is not None
    _expire(store, leased)
    assert store.acquire_lease(leased, "worker-b", ttl=30) is not None
    with pytest.raises(LeaseLost) as lost:
        store.append_many(
            {leased: [trace(leased).event("run_start")], other: [trace(other).event("run_start")]},
            lease_tokens={leased: stale.token},
        )
    assert lost.value.run_id == leased
    assert store.count_events(leased) == store.count_events(other) == 0


def test_writes_without_a_token_behave_as_before(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    # the in-process executor uses no leases: a lease held by a worker does not stop it
    events = trace(run["id"])
    assert store.acquire_lease(run["id"], "worker-a", ttl=30) is not None
    store.mark_running(run["id"])
    store.append_events(run["id"], [events.event("run_start")], checkpoint=CHECKPOINT)
    store.append_many({run["id"]: [events.event("log")]})
    assert store.finish_run(run["id"], "succeeded")["status"] == "succeeded"


def test_concurrent_acquirers_exactly_one_wins(store: SqlRunStore, run: dict[str, Any]) -> None:
    contenders = 8
    barrier = threading.Barrier(contenders)

    def acquire(index: int) -> Any:
        barrier.wait()
        return store.acquire_lease(run["id"], f"worker-{index}", ttl=30)

    with ThreadPoolExecutor(contenders) as pool:
        results = list(pool.map(acquire, range(contenders)))
    winners = [lease for lease in results if lease is not None]
    assert len(winners) == 1
    assert winners[0].token == 1
    assert store.get_lease(run["id"])["owner"] == winners[0].owner


def test_leases_of_runs_are_independent(store: SqlRunStore, trace: Any) -> None:
    first, second = _new_run(store), _new_run(store)
    a = store.acquire_lease(first, "worker-a", ttl=30)
    b = store.acquire_lease(second, "worker-b", ttl=30)
    assert a is not None and b is not None and a.token == b.token == 1
    for _ in range(3):  # first's lease changes hands; second's is untouched
        _expire(store, first)
        assert store.acquire_lease(first, "worker-c", ttl=30) is not None
    assert store.get_lease(first)["token"] == 4
    assert store.get_lease(second) | {"expires_at": None} == {
        "run_id": second,
        "owner": "worker-b",
        "token": 1,
        "expires_at": None,
        "expired": False,
    }
    store.append_events(second, [trace(second).event("run_start")], lease_token=b.token)
    assert store.count_events(second) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, r: s.acquire_lease(r, "w", ttl=0), "a lease ttl is seconds > 0"),
        (lambda s, r: s.acquire_lease(r, "w", ttl=float("nan")), "a lease ttl is seconds > 0"),
        (lambda s, r: s.acquire_lease(r, "w", ttl=True), "a lease ttl is seconds > 0"),
        (lambda s, r: s.acquire_lease(r, "w", ttl=10**9), "a lease ttl is seconds > 0"),
        (lambda s, r: s.acquire_lease(r, "", ttl=30), "a lease owner is a non-empty string"),
        (lambda s, r: s.renew_lease(r, 0, ttl=30), "a lease token is an integer >= 1"),
        (lambda s, r: s.mark_running(r, lease_token="1"), "a lease token is an integer >= 1"),
    ],
)
def test_bad_lease_arguments_are_refused_saying_what_is_expected(
    store: SqlRunStore, run: dict[str, Any], call: Any, message: str
) -> None:
    with pytest.raises(InvalidData, match=message):
        call(store, run["id"])
    assert store.get_lease(run["id"])["token"] == 0


def test_leases_of_an_unknown_run_are_not_found(store: SqlRunStore) -> None:
    with pytest.raises(NotFound, match="run 'nope' not found"):
        store.acquire_lease("nope", "worker-a", ttl=30)
    with pytest.raises(NotFound):
        store.get_lease("nope")
    with pytest.raises(NotFound):
        store.append_events("nope", [], checkpoint=CHECKPOINT, lease_token=1)


def test_the_writer_gives_up_on_a_stale_token_at_once(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    """LeaseLost is no outage: the event writer neither retries the batch nor tries its events
    one by one; it hands them to on_failure, and nothing is stored."""
    from backpackflow_store_sql import EventWriter

    run_id = run["id"]
    stale = store.acquire_lease(run_id, "worker-a", ttl=30)
    assert stale is not None
    _expire(store, run_id)
    assert store.acquire_lease(run_id, "worker-b", ttl=30) is not None

    calls: list[int] = []
    failed: list[tuple[int, type[BaseException]]] = []

    class StaleWorker:  # writes as the stale worker's service does: with its token
        def append_events(self, run_id: str, events: Any, **options: Any) -> None:
            calls.append(len(events))
            store.append_events(run_id, events, lease_token=stale.token, **options)

    writer = EventWriter(
        StaleWorker(),
        max_delay=60,  # one batch: the flush below sends it
        on_failure=lambda _run, events, error: failed.extend(
            (event["seq"], type(error)) for event in events
        ),
    )
    events = trace(run_id)
    for kind in ("run_start", "node_start", "node_end", "run_end"):
        writer.put(run_id, events.event(kind))
    writer.close(timeout=10)
    assert calls == [4]
    assert failed == [(seq, LeaseLost) for seq in (1, 2, 3, 4)]
    assert store.count_events(run_id) == 0


def test_the_holders_status_changes_go_through_until_it_releases_the_lease(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    run_id = run["id"]
    lease = store.acquire_lease(run_id, "worker-a", ttl=30)
    assert lease is not None
    assert store.mark_running(run_id, lease_token=lease.token)["status"] == "running"
    assert store.pause_run(run_id, lease_token=lease.token)["status"] == "paused"
    assert store.mark_running(run_id, lease_token=lease.token)["status"] == "running"
    end = trace(run_id).event("run_end", {"status": "succeeded", "duration_ms": 3.0})
    store.append_events(run_id, [end], lease_token=lease.token)
    store.release_lease(run_id, lease.token)
    with pytest.raises(LeaseLost, match="was released"):
        store.finish_run(run_id, "succeeded", lease_token=lease.token)
    with pytest.raises(InvalidData, match="a lease token is an integer"):
        store.finish_run(run_id, "succeeded", lease_token=True)  # type: ignore[arg-type]
    assert store.get_run(run_id)["status"] == "running"
    again = store.acquire_lease(run_id, "worker-b", ttl=30)
    assert again is not None
    done = store.finish_run(run_id, "succeeded", lease_token=again.token)
    assert (done["status"], done["total_latency_ms"]) == ("succeeded", 3.0)


def test_a_holder_stalled_inside_a_transaction_does_not_block_the_takeover(
    migrated_postgres_url: str,
) -> None:
    """A process that stalls (frozen, paused VM) between two statements of a transaction keeps
    the rows it locked; PostgreSQL ends such a transaction after the store's idle timeout, so
    the worker taking the run over is not held up for as long as the stalled one stays stalled."""
    from sqlalchemy.exc import DBAPIError

    from backpackflow_store_sql.writer import is_transient

    stalled = SqlRunStore(
        migrated_postgres_url, engine_options={"idle_in_transaction_timeout": 0.5}
    )
    taker = SqlRunStore(migrated_postgres_url)
    try:
        run_id = _new_run(taker)
        assert stalled.acquire_lease(run_id, "stalled", ttl=30) is not None
        _expire(taker, run_id)
        table = WorkflowRun.__table__
        with stalled.engine.connect() as connection:
            # the holder locks its run's row, as a write does, then stalls
            connection.execute(table.select().where(table.c.id == run_id).with_for_update())
            taken = ThreadPoolExecutor(1).submit(taker.acquire_lease, run_id, "taker", ttl=30)
            lease = taken.result(timeout=20)  # waits on the lock until the server ends the stall
            assert lease is not None and lease.token == 2
            with pytest.raises(DBAPIError) as ended:  # the stalled transaction is gone
                connection.execute(table.select().where(table.c.id == run_id))
            # a disconnect: the thawed holder's writer retries, and then meets LeaseLost
            assert ended.value.connection_invalidated and is_transient(ended.value)
        with stalled.engine.connect() as connection:  # later sessions have the same timeout
            timeout = connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
            assert timeout.scalar() == "500ms"
    finally:
        stalled.close()
        taker.close()


def test_the_idle_in_transaction_timeout_must_be_positive_seconds(tmp_path: Any) -> None:
    for bad in (0, -1, "10", True):
        with pytest.raises(StoreConfigError, match="idle_in_transaction_timeout must be"):
            SqlRunStore(
                f"sqlite:///{tmp_path / 'x.db'}",
                engine_options={"idle_in_transaction_timeout": bad},
            )
