"""The Backpack's JSON form, both directions: :func:`dump_backpack` writes it (``to_json()``),
:func:`load_backpack` reads it (``from_json()``), and the load hands what it read to the
Backpack's one restore method (:meth:`~backpackflow.backpack._state._State._restore`) instead
of writing its storage.

The document's shape is checked with a JSON Schema first, so a malformed document fails with the
JSON path of the first problem; then the history is replayed into fresh version indexes. The
consistency rules the schema cannot express (contiguous seqs, parent links, delta ops) are
checked while replaying, again naming the path.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from backpackflow.backpack.access import Permissions
from backpackflow.backpack.records import (
    _C_KEY,
    _C_OP,
    _C_SEQ,
    _C_TAGS,
    _DELETED,
    _E_LENGTH,
    _E_VALUE,
    FORMAT,
    FORMAT_VERSION,
    AccessRecord,
    Commit,
    _as_log,
    _commit,
    _Entry,
    _entry_seq,
    _entry_value,
)
from backpackflow.errors import BackpackFlowError, SerializationError
from backpackflow.jsondata import JSONTooDeep, check_depth, copy_in, copy_out
from backpackflow.jsondata import loads as load_json
from backpackflow.namespaces import validate_namespace

if TYPE_CHECKING:  # type-only back references: the classes this codec reads and builds
    from backpackflow.backpack._backpack import Backpack
    from backpackflow.backpack._history import HistoryMixin

_STR_OR_NULL = {"type": ["string", "null"]}
_PATTERNS = {"type": ["array", "null"], "items": {"type": "string"}}
#: A commit's ops: the schema's enum, and what an unvalidated load checks.
_OPS = ("pack", "append", "delete")
_COMMIT = {
    "type": "object",
    "required": [
        "commit_id",
        "seq",
        "parent_id",
        "timestamp",
        "node_id",
        "node_name",
        "namespace",
        "op",
        "key",
        "version",
        "tags",
    ],
    "properties": {
        "commit_id": {"type": "string", "minLength": 1},
        "seq": {"type": "integer", "minimum": 1},
        "parent_id": _STR_OR_NULL,
        "timestamp": {"type": "number"},
        "node_id": _STR_OR_NULL,
        "node_name": _STR_OR_NULL,
        "namespace": _STR_OR_NULL,
        "op": {"enum": list(_OPS)},
        "key": {"type": "string", "minLength": 1},
        "version": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "value": True,
        "items": {"type": "array"},
    },
    "additionalProperties": False,
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "format",
        "format_version",
        "id",
        "strict",
        "max_history",
        "forked_from",
        "seq",
        "first_commit_id",
        "evicted",
        "base",
        "commits",
        "permissions",
        "node_marks",
        "denials",
    ],
    "properties": {
        "format": {"const": "backpackflow.backpack"},
        "format_version": {"const": 1},
        "id": {"type": "string", "minLength": 1},
        "strict": {"type": "boolean"},
        "max_history": {"type": ["integer", "null"], "minimum": 1},
        "forked_from": {
            "type": ["object", "null"],
            "required": ["backpack_id", "commit_id"],
            "properties": {"backpack_id": {"type": "string"}, "commit_id": {"type": "string"}},
            "additionalProperties": False,
        },
        "seq": {"type": "integer", "minimum": 0},
        "first_commit_id": _STR_OR_NULL,
        "evicted": {"type": "integer", "minimum": 0},
        "base": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["commit", "deleted"],
                "properties": {"commit": _COMMIT, "deleted": {"type": "boolean"}, "value": True},
                "additionalProperties": False,
            },
        },
        "commits": {"type": "array", "items": _COMMIT},
        "permissions": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "read": _PATTERNS,
                    "write": _PATTERNS,
                    "namespace_read": _PATTERNS,
                    "namespace_write": _PATTERNS,
                    "deny": _PATTERNS,
                    "namespace_deny": _PATTERNS,
                },
                "additionalProperties": False,
            },
        },
        "node_marks": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        },
        "denials": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["op", "key", "node_id", "granted", "reason", "timestamp"],
            },
        },
    },
    "additionalProperties": False,
}
_VALIDATOR = Draft202012Validator(SCHEMA)


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def dump_backpack(bp: HistoryMixin) -> dict[str, Any]:
    """A Backpack as JSON data (what :meth:`Backpack.to_json` returns; :func:`load_backpack`
    reads it back)."""
    oldest = bp._oldest_seq()
    base = []
    starts = bp._log_starts
    for key, stored in bp._logs.items():
        log = _as_log(stored)
        start = starts.get(key, 0)
        entry = log[start] if start < len(log) else None
        if entry is not None and entry[_C_SEQ] < oldest:
            deleted = entry[_E_VALUE] is _DELETED
            item = {"commit": _commit(entry).to_json(), "deleted": deleted}
            if not deleted:
                item["value"] = _entry_value(entry)
            base.append(item)
    commits = _commits_json(bp, bp._commits[bp._commit_start :])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": bp.id,
        "strict": bp.strict,
        "max_history": bp.max_history,
        "forked_from": dict(bp.forked_from) if bp.forked_from else None,
        "seq": bp._seq,
        "first_commit_id": bp._first_commit_id,
        "evicted": bp._evicted,
        "base": base,
        "commits": commits,
        "permissions": {n: p.to_json() for n, p in bp._permissions.items()},
        "node_marks": {n: bp._all_marks_of(n) for n in bp._node_marks},
        "denials": [d.to_json() for d in bp._denials or ()],
    }


def _commits_json(bp: HistoryMixin, commits: list[_Entry]) -> list[dict[str, Any]]:
    """Commits (their entries) as the JSON records of the document's ``commits``: each with
    what it wrote (a pack's value, an append's items: the items past the list's length at the
    key's previous entry)."""
    starts = bp._log_starts
    out = []
    fields = Commit._fields
    for commit in commits:
        # Commit.to_json (zip stops at the commit's last field, before what it stored)
        data: dict[str, Any] = dict(zip(fields, commit, strict=False))
        data["tags"] = list(commit[_C_TAGS])
        op = commit[_C_OP]
        if op == "pack":
            data["value"] = _entry_value(commit)
        elif op == "append":
            key = commit[_C_KEY]
            log = _as_log(bp._logs[key])
            start = starts.get(key, 0)
            i = bisect_right(log, commit[_C_SEQ], start, key=_entry_seq) - 1
            prev = log[i - 1] if i > start else None
            seen = prev[_E_LENGTH] if prev is not None and prev[_E_LENGTH] is not None else 0
            end = commit[_E_LENGTH]
            assert end is not None
            data["items"] = [copy_out(v) for v in commit[_E_VALUE][seen:end]]
        out.append(data)
    return out


def dump_commits(bp: HistoryMixin, after_seq: int) -> list[dict[str, Any]]:
    """The commits after seq ``after_seq`` as JSON records (the delta a checkpoint appends:
    what each commit wrote, never the whole state). Commits ``max_history`` dropped are not
    there to give: the records start at the oldest one kept."""
    with bp._lock:
        first = bp._commit_start + max(0, after_seq - bp._oldest_seq() + 1)
        commits = bp._commits[first:]
        return _commits_json(bp, commits)


#: How deeply Backpack JSON may nest (its values may nest deeper than flow configs do).
MAX_BACKPACK_DEPTH = 512


def load_backpack(
    cls: type[Backpack], data: Mapping[str, Any] | str | bytes, *, validate: bool = True
) -> Backpack:
    """The Backpack ``data`` describes. ``validate=False`` checks the commits (about 90% of
    the schema's cost: 95 of 110 ms for 1,000 commits) only as the load reads them, for
    documents this library wrote itself, such as a checkpoint's; the rest of the document is
    checked by the schema as always, and a document that then fails to load is checked whole,
    so a damaged one still gets the schema's error naming its JSON path."""
    try:
        if isinstance(data, (str, bytes)):
            data = load_json(data, max_depth=MAX_BACKPACK_DEPTH)
        else:
            check_depth(data, MAX_BACKPACK_DEPTH)  # before recursive validation
    except JSONTooDeep as exc:
        raise SerializationError(f"Backpack JSON {exc}") from None
    except ValueError as exc:
        raise SerializationError(f"Backpack JSON is not valid JSON: {exc}") from None
    if not validate and isinstance(data, Mapping) and isinstance(data.get("commits"), list):
        # everything but the commits after the first, which the load checks as it reads them
        head = {**data, "commits": data["commits"][:1]}
        if not any(_VALIDATOR.iter_errors(head)):
            try:
                return _build(cls, data)
            except SerializationError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                pass  # malformed after all: the schema says where
    error = next(iter(sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        raise SerializationError(f"Backpack JSON {_path(error.absolute_path)}: {error.message}")
    return _build(cls, data)


def _build(cls: type[Backpack], data: Any) -> Backpack:
    """:func:`load_backpack` past the JSON Schema check (or with it skipped)."""
    assert isinstance(data, Mapping)

    def commit_of(raw: Mapping[str, Any], where: str) -> Commit:
        if raw["namespace"] is not None:
            try:
                validate_namespace(raw["namespace"], where=f"{where}.namespace")
            except BackpackFlowError as exc:
                raise SerializationError(f"Backpack JSON {exc}") from None
        return Commit(
            raw["commit_id"],
            raw["seq"],
            raw["parent_id"],
            float(raw["timestamp"]),
            raw["node_id"],
            raw["node_name"],
            raw["namespace"],
            raw["op"],
            raw["key"],
            raw["version"],
            tuple(raw["tags"]),
        )

    def value_of(raw: Any, where: str) -> Any:
        try:
            return copy_in(raw, where)
        except BackpackFlowError as exc:
            raise SerializationError(f"Backpack JSON {exc}") from None

    bp = cls(strict=data["strict"], max_history=data["max_history"], backpack_id=data["id"])
    # what was read, handed to the Backpack's restore in one call (the codec writes no storage)
    entries: list[tuple[str, Commit, Any, int | None]] = []
    current: dict[str, tuple[Any, int | None]] = {}  # key -> (stored, list length) as replayed

    def add(key: str, commit: Commit, stored: Any, length: int | None) -> None:
        entries.append((key, commit, stored, length))
        if stored is _DELETED:
            current.pop(key, None)
        else:
            current[key] = (stored, length)

    for i, raw in enumerate(data["base"]):
        where = f"$.base[{i}]"
        commit = commit_of(raw["commit"], f"{where}.commit")
        if raw["deleted"]:
            add(commit.key, commit, _DELETED, None)
        else:
            if "value" not in raw:
                raise SerializationError(f"Backpack JSON {where}: a live base entry needs 'value'")
            value = value_of(raw["value"], f"{where}.value")
            add(commit.key, commit, value, len(value) if type(value) is list else None)

    commits: list[Commit] = []
    previous: Commit | None = None
    for i, raw in enumerate(data["commits"]):
        where = f"$.commits[{i}]"
        commit = commit_of(raw, where)
        if previous is not None and commit.seq != previous.seq + 1:
            raise SerializationError(
                f"Backpack JSON {where}.seq: expected {previous.seq + 1}, got {commit.seq}"
            )
        if previous is not None and commit.parent_id != previous.commit_id:
            raise SerializationError(
                f"Backpack JSON {where}.parent_id: expected {previous.commit_id!r}, "
                f"got {commit.parent_id!r}"
            )
        if commit.op not in _OPS:  # (what the schema says, for an unvalidated load)
            raise SerializationError(
                f"Backpack JSON {where}.op: {commit.op!r} is not one of {sorted(_OPS)}"
            )
        if commit.op == "pack":
            if "value" not in raw:
                raise SerializationError(f"Backpack JSON {where}: a pack commit needs 'value'")
            value = value_of(raw["value"], f"{where}.value")
            add(commit.key, commit, value, len(value) if type(value) is list else None)
        elif commit.op == "append":
            if "items" not in raw:
                raise SerializationError(f"Backpack JSON {where}: an append commit needs 'items'")
            items = value_of(raw["items"], f"{where}.items")
            now = current.get(commit.key)
            if now is None:
                base: list[Any] = items
            else:
                if now[1] is None:
                    raise SerializationError(
                        f"Backpack JSON {where}: append to key {commit.key!r}, which is not a list"
                    )
                base = now[0]
                base.extend(items)
            add(commit.key, commit, base, len(base))
        else:
            add(commit.key, commit, _DELETED, None)
        commits.append(commit)
        previous = commit
    if previous is not None and previous.seq != data["seq"]:
        raise SerializationError(
            f"Backpack JSON $.seq: {data['seq']} does not match the last commit's seq "
            f"{previous.seq}"
        )
    permissions = {}
    for node_id, raw_perms in data["permissions"].items():
        try:
            permissions[node_id] = Permissions.from_json(raw_perms)
        except BackpackFlowError as exc:
            raise SerializationError(f"Backpack JSON $.permissions.{node_id}: {exc}") from None
    denials = [
        AccessRecord(
            raw["op"],
            raw["key"],
            raw["node_id"],
            raw.get("node_name"),
            raw.get("namespace"),
            raw["granted"],
            raw["reason"],
            raw.get("found", True),
            None,
            None,
            raw["timestamp"],
        )
        for raw in data["denials"]
    ]
    bp._restore(
        forked_from=dict(data["forked_from"]) if data["forked_from"] else None,
        first_commit_id=data["first_commit_id"],
        evicted=data["evicted"],
        entries=entries,
        commits=commits,
        seq=data["seq"],
        permissions=permissions,
        node_marks={n: list(m) for n, m in data["node_marks"].items()},
        denials=denials,
    )
    return bp
