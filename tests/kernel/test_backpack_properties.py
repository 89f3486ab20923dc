"""Property tests: history, snapshots, diffs and serialization agree with a naive model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backpackflow import Backpack
from backpackflow.jsondata import json_equal

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(["a", "b", "c", "d.e"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("pack"), keys, json_values),
        st.tuples(st.just("append"), keys, st.lists(json_values, min_size=1, max_size=3)),
        st.tuples(st.just("delete"), keys, st.none()),
    ),
    max_size=40,
)


def apply_naively(ops):
    """Run ops on a Backpack and, beside it, on a plain dict; return both and the states."""
    bp = Backpack()
    state: dict = {}
    states: dict[str, dict] = {}
    for op, key, arg in ops:
        if op == "pack":
            commit = bp.pack(key, arg)
            state[key] = arg
        elif op == "append":
            if key in state and not isinstance(state[key], list):
                continue
            commit = bp.append(key, arg)
            state[key] = [*state.get(key, []), *arg]
        else:
            commit = bp.delete(key)
            state.pop(key, None)
        if commit is not None:
            states[commit.commit_id] = {k: v for k, v in state.items()}
    return bp, state, states


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(json_equal(_norm(a[k]), _norm(b[k])) for k in a)


def _norm(value):
    # tuples never occur in generated data; lists/dicts compare structurally
    return value


@given(operations)
def test_snapshot_at_every_commit_equals_naive_replay(ops):
    bp, state, states = apply_naively(ops)
    assert same(bp.to_dict(), state)
    for commit in bp.get_history():
        assert same(bp.get_snapshot_at_commit(commit.commit_id).to_dict(), states[commit.commit_id])


@given(operations, st.data())
def test_diff_of_two_snapshots_applied_to_the_first_gives_the_second(ops, data):
    bp, _, _ = apply_naively(ops)
    history = bp.get_history()
    if not history:
        return
    a = data.draw(st.sampled_from(history))
    b = data.draw(st.sampled_from(history))
    snap_a = bp.get_snapshot_at_commit(a.commit_id)
    snap_b = bp.get_snapshot_at_commit(b.commit_id)
    diff = Backpack.diff(snap_a, snap_b)
    assert same(diff.apply(snap_a), snap_b.to_dict())
    plain = Backpack.diff(snap_a.to_dict(), snap_b.to_dict())
    assert same(plain.apply(snap_a.to_dict()), snap_b.to_dict())


@given(operations)
def test_serialization_round_trip_preserves_everything(ops):
    bp, state, states = apply_naively(ops)
    data = bp.to_json()
    restored = Backpack.from_json(data)
    assert restored.to_json() == data
    assert same(restored.to_dict(), state)
    for commit in restored.get_history():
        assert same(
            restored.get_snapshot_at_commit(commit.commit_id).to_dict(), states[commit.commit_id]
        )


@given(operations, st.integers(min_value=1, max_value=6))
def test_bounded_history_snapshots_match_for_retained_commits(ops, bound):
    full, state, states = apply_naively(ops)
    bounded = Backpack(max_history=bound)
    for commit in full.get_history():
        op, key = commit.op, commit.key
        if op == "pack":
            bounded.pack(key, full.get_snapshot_at_commit(commit.commit_id)[key])
        elif op == "append":
            before = full.get_snapshot_at_commit(commit.commit_id)[key]
            prev_len = 0
            if commit.parent_id is not None:
                prev = full.get_snapshot_at_commit(commit.parent_id)
                prev_len = len(prev[key]) if key in prev else 0
            bounded.append(key, before[prev_len:])
        else:
            bounded.delete(key)
    assert same(bounded.to_dict(), state)
    ours = bounded.get_history()
    theirs = full.get_history()[-len(ours) :] if ours else []
    assert len(ours) <= bound
    for mine, original in zip(ours, theirs, strict=True):
        assert same(
            bounded.get_snapshot_at_commit(mine.commit_id).to_dict(), states[original.commit_id]
        )
    restored = Backpack.from_json(bounded.to_json())
    assert restored.to_json() == bounded.to_json()


@given(operations, st.data())
def test_fork_at_any_commit_has_that_state(ops, data):
    bp, _, states = apply_naively(ops)
    history = bp.get_history()
    if not history:
        return
    commit = data.draw(st.sampled_from(history))
    fork = bp.replay_from_commit(commit.commit_id)
    assert same(fork.to_dict(), states[commit.commit_id])
    fork.append("fresh", [1])
    assert same(bp.to_dict(), states[history[-1].commit_id])
