import enum
import math

import pytest

from backpackflow.errors import InvalidValue
from backpackflow.jsondata import copy_in, copy_out, json_equal, summarize


def test_copy_in_copies_deeply():
    original = {"a": [1, {"b": "c"}]}
    stored = copy_in(original)
    assert stored == original
    original["a"][1]["b"] = "changed"
    assert stored["a"][1]["b"] == "c"


def test_tuples_become_lists_as_json_writes_them():
    assert copy_in({"t": (1, (2, 3))}) == {"t": [1, [2, 3]]}


def test_enum_subclasses_are_stored_as_their_value():
    class Colour(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    stored = copy_in([Colour.RED, Level.HIGH])
    assert stored == ["red", 3]
    assert type(stored[0]) is str and type(stored[1]) is int


@pytest.mark.parametrize(
    ("value", "path", "what"),
    [
        (object(), "$", "object"),
        ({"a": {1, 2}}, "$.a", "set"),
        ({"a": [1, b"x"]}, "$.a[1]", "bytes"),
        ({1: "int key"}, "$ key 1", "int"),
        ({"a": math.inf}, "$.a", "non-finite float inf"),
        ({"with space": [float("nan")]}, "$['with space'][0]", "non-finite float nan"),
    ],
)
def test_non_json_values_are_refused_with_path_and_type(value, path, what):
    with pytest.raises(InvalidValue) as info:
        copy_in(value, "key 'k'")
    message = str(info.value)
    assert message.startswith("key 'k': ")
    assert f"{path} is" in message
    assert what in message


def test_copy_out_gives_independent_copies():
    stored = copy_in({"a": [1, 2]})
    out = copy_out(stored)
    out["a"].append(3)
    assert stored == {"a": [1, 2]}


def test_json_equal_is_type_exact():
    assert json_equal({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not json_equal(1, True)
    assert not json_equal(1, 1.0)
    assert not json_equal([1], [1, 2])
    assert not json_equal({"a": 1}, {"b": 1})
    assert json_equal(None, None)


def test_summarize_truncates_and_never_raises():
    assert summarize({"a": 1}) == '{"a":1}'
    text = summarize("x" * 1000, limit=50)
    assert len(text) == 50 and text.endswith("…")
    assert "object" in summarize(object())


def test_a_pack_event_value_of_a_list_serializes_as_what_was_written():
    from backpackflow import Backpack
    from backpackflow.jsondata import to_jsonable

    seen = []
    backpack = Backpack()
    backpack.add_observer(lambda record: seen.append(record))
    backpack.pack("items", ["a"])
    backpack.append("items", ["b"])
    assert [to_jsonable(r.value) for r in seen] == [["a"], ["b"]]
