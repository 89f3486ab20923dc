"""Loading a Backpack from its ``to_json()`` form.

The document's shape is checked with a JSON Schema first, so a malformed document fails with the
JSON path of the first problem; then the history is replayed into fresh version indexes. The
consistency rules the schema cannot express (contiguous seqs, parent links, delta ops) are
checked while replaying, again naming the path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from backpackflow.backpack.access import Permissions
from backpackflow.errors import BackpackFlowError, SerializationError
from backpackflow.jsondata import JSONTooDeep, check_depth, copy_in
from backpackflow.jsondata import loads as load_json
from backpackflow.namespaces import validate_namespace

if TYPE_CHECKING:
    from backpackflow.backpack._backpack import Backpack
    from backpackflow.backpack.records import _Entry

_STR_OR_NULL = {"type": ["string", "null"]}
_PATTERNS = {"type": ["array", "null"], "items": {"type": "string"}}
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
        "op": {"enum": ["pack", "append", "delete"]},
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


#: How deeply Backpack JSON may nest (its values may nest deeper than flow configs do).
MAX_BACKPACK_DEPTH = 512


def load_backpack(cls: type[Backpack], data: Mapping[str, Any] | str | bytes) -> Backpack:
    from backpackflow.backpack.records import _DELETED, AccessRecord, Commit, _log_with

    try:
        if isinstance(data, (str, bytes)):
            data = load_json(data, max_depth=MAX_BACKPACK_DEPTH)
        else:
            check_depth(data, MAX_BACKPACK_DEPTH)  # before recursive validation
    except JSONTooDeep as exc:
        raise SerializationError(f"Backpack JSON {exc}") from None
    except ValueError as exc:
        raise SerializationError(f"Backpack JSON is not valid JSON: {exc}") from None
    error = next(iter(sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        raise SerializationError(f"Backpack JSON {_path(error.absolute_path)}: {error.message}")
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
    bp.forked_from = dict(data["forked_from"]) if data["forked_from"] else None
    bp._first_commit_id = data["first_commit_id"]
    bp._evicted = data["evicted"]

    def add(key: str, commit: Commit, stored: Any, length: int | None) -> None:
        entry: _Entry = (commit, stored, length, commit.seq)
        bp._logs[key] = _log_with(bp._logs.get(key), entry)
        if stored is _DELETED:
            bp._current.pop(key, None)
        else:
            bp._current[key] = entry

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
        if commit.op == "pack":
            if "value" not in raw:
                raise SerializationError(f"Backpack JSON {where}: a pack commit needs 'value'")
            value = value_of(raw["value"], f"{where}.value")
            add(commit.key, commit, value, len(value) if type(value) is list else None)
        elif commit.op == "append":
            if "items" not in raw:
                raise SerializationError(f"Backpack JSON {where}: an append commit needs 'items'")
            items = value_of(raw["items"], f"{where}.items")
            current = bp._current.get(commit.key)
            if current is None:
                base: list[Any] = items
            else:
                if current[2] is None:
                    raise SerializationError(
                        f"Backpack JSON {where}: append to key {commit.key!r}, which is not a list"
                    )
                base = current[1]
                base.extend(items)
            add(commit.key, commit, base, len(base))
        else:
            add(commit.key, commit, _DELETED, None)
        bp._commits.append(commit)
        previous = commit
    if previous is not None and previous.seq != data["seq"]:
        raise SerializationError(
            f"Backpack JSON $.seq: {data['seq']} does not match the last commit's seq "
            f"{previous.seq}"
        )
    bp._seq = data["seq"]
    bp._head = previous
    for node_id, raw_perms in data["permissions"].items():
        try:
            bp._permissions[node_id] = Permissions.from_json(raw_perms)
        except BackpackFlowError as exc:
            raise SerializationError(f"Backpack JSON $.permissions.{node_id}: {exc}") from None
    bp._node_marks = {n: list(m) for n, m in data["node_marks"].items()}
    for raw in data["denials"]:
        if bp._denials is None:
            bp._denials = deque(maxlen=bp._max_denials)
        bp._denials.append(
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
        )
    return bp
