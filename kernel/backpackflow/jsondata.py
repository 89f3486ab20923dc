"""JSON data: validated copies in, independent copies out, type-exact equality.

The Backpack stores only JSON data so that every state can be serialized, diffed and replayed.
``copy_in`` validates and copies in one pass (tuples become lists, as ``json`` would write them);
``copy_out`` hands callers a copy they may mutate freely. Scalars are immutable and are shared.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs

from backpackflow.errors import InvalidValue

JSON_TYPES = "dict (with str keys), list, tuple, str, int, float (finite), bool or None"


def copy_in(value: Any, where: str = "value") -> Any:
    """Return a deep copy of ``value`` as plain JSON data, or raise ``InvalidValue``.

    ``where`` names the value in the error (e.g. ``"key 'answer'"``); the error adds the JSON
    path inside the value and the offending type.
    """
    try:
        return _copy_in(value)
    except _NotJson:
        path, bad = _find_bad(value, "$")
        raise InvalidValue(
            f"{where}: {path} is {_describe(bad)}, which is not JSON data; expected {JSON_TYPES}"
        ) from None
    except RecursionError:  # a value that contains itself, or one nested absurdly deep
        cycle = _cycle_path(value)
        if cycle is not None:
            raise InvalidValue(
                f"{where}: {cycle} contains itself (it refers back to an enclosing list or dict), "
                "which JSON data cannot"
            ) from None
        raise InvalidValue(f"{where}: nested too deeply to be JSON data") from None


def _cycle_path(value: Any) -> str | None:
    """The JSON path of the first list or dict found inside itself, else ``None`` (an
    iterative walk: the value may be too deep for recursion; steps are kept as links to their
    parent, so the path text is built only for the answer)."""
    ancestors: set[int] = set()
    # (node, its step: (parent step, key or index) or None for the root, its children)
    Step = tuple[Any, Any]
    stack: list[tuple[Any, Step | None, Iterator[tuple[Any, Any]] | None]] = [(value, None, None)]
    while stack:
        node, step, children = stack[-1]
        if children is None:
            if isinstance(node, dict):
                children = iter(node.items())
            elif isinstance(node, (list, tuple)):
                children = enumerate(node)
            else:
                stack.pop()
                continue
            ancestors.add(id(node))
            stack[-1] = (node, step, children)
        child = next(children, None)
        if child is None:
            ancestors.discard(id(node))
            stack.pop()
            continue
        key, child_value = child
        if id(child_value) in ancestors:
            return _path_text((step, key))
        stack.append((child_value, (step, key), None))
    return None


def _path_text(step: tuple[Any, Any] | None) -> str:
    keys = []
    while step is not None:
        step, key = step
        keys.append(key)
    parts = ["$"]
    for key in reversed(keys):
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif isinstance(key, str) and key.isidentifier():
            parts.append(f".{key}")
        else:
            parts.append(f"[{key!r}]")
    return "".join(parts)


class _NotJson(Exception):
    pass


def _copy_in(value: Any) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise _NotJson
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotJson
            out[k] = _copy_in(v)
        return out
    if t is list or t is tuple:
        return [_copy_in(v) for v in value]
    # Subclasses of the JSON scalars (str/int enums, numpy-free numbers) are stored as their base
    # value, exactly as json.dumps would write them.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        # the underlying text, as json.dumps writes it (str() of an enum gives its name)
        return "" + value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(value)
    raise _NotJson


def _find_bad(value: Any, path: str) -> tuple[str, Any]:
    """Locate the first non-JSON part of ``value`` (slow path, only after a failure)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} key {k!r}", k
            sub = _find_bad(v, f"{path}.{k}" if k.isidentifier() else f"{path}[{k!r}]")
            if sub[0]:
                return sub
        return "", None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            sub = _find_bad(v, f"{path}[{i}]")
            if sub[0]:
                return sub
        return "", None
    if value is None or isinstance(value, (str, int, bool)):
        return "", None
    if isinstance(value, float) and math.isfinite(value):
        return "", None
    return path, value


def _describe(value: Any) -> str:
    if isinstance(value, float):
        return f"the non-finite float {value!r}"
    name = f"{type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")
    return f"a value of type {name}"


def copy_out(value: Any) -> Any:
    """Deep copy of stored JSON data (no validation: it was validated on the way in)."""
    t = type(value)
    if t is dict:
        return {k: copy_out(v) for k, v in value.items()}
    if t is list:
        return [copy_out(v) for v in value]
    return value


def decimal_text(value: Decimal | int) -> str:
    """An exact amount as JSON-friendly text in positional notation: ``"0.0000006"``, never
    ``"6E-7"`` (what ``str(Decimal)`` gives); zero is ``"0"``."""
    return format(value, "f") if value else "0"


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``1``, ``1.0`` and ``True`` are three different values."""
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is dict:
        if a.keys() != b.keys():
            return False
        return all(json_equal(v, b[k]) for k, v in a.items())
    if ta is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class ListPrefix:
    """The first ``length`` items of a stored list, without copying them: what a ``pack`` of a
    list wrote, even after later appends extended the stored list in place."""

    __slots__ = ("items", "length")

    def __init__(self, items: list[Any], length: int) -> None:
        self.items = items
        self.length = length

    def to_json(self) -> list[Any]:
        """The items it stands for (a copy of the list, not of the items)."""
        return self.items[: self.length]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)


def summarize(value: Any, limit: int = 200) -> str:
    """A short, single-line JSON text of ``value`` for events and logs. Encoding stops once
    ``limit`` characters are written, so summarizing a huge value costs little; never raises."""
    try:
        if isinstance(value, ListPrefix):
            chunks = _prefix_chunks(value)
        else:
            chunks = _ENCODER.iterencode(value)
        out: list[str] = []
        size = 0
        for chunk in chunks:
            out.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        text = "".join(out)
    except Exception:  # noqa: BLE001 - a summary must never fail
        text = repr(value)
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _prefix_chunks(prefix: ListPrefix) -> Iterator[str]:
    yield "["
    for i in range(prefix.length):
        if i:
            yield ","
        yield from _ENCODER.iterencode(prefix.items[i])
    yield "]"


# ------------------------------------------------------------------------------- reading JSON

#: How deeply JSON read from outside (flow files, CLI arguments, recorded traces) may nest.
#: Deeper documents are refused with a clear error before any recursive code (schema
#: validation, copying, structuring) could run out of stack on them; no flow needs as much.
MAX_JSON_DEPTH = 256


class JSONTooDeep(ValueError):
    """JSON nested more deeply than allowed; the message names the limit and where."""


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH, where: str = "$") -> None:
    """Raise :class:`JSONTooDeep` when dicts and lists in ``value`` nest deeper than ``limit``
    (iterative: any depth is measured without recursion)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, (list, tuple)):
            children = enumerate(item)
        else:
            continue
        if depth >= limit:
            raise JSONTooDeep(
                f"{path}: nested more than {limit} levels deep (objects and arrays); flatten it"
            )
        for key, child in children:
            if isinstance(child, (dict, list, tuple)):
                step = f"[{key}]" if isinstance(key, int) else f".{key}"
                if len(path) < 60:
                    child_path = path + step
                else:
                    child_path = path if path.endswith("…") else path + "…"
                stack.append((child, depth + 1, child_path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for JSON from outside: NaN/Infinity refused, nesting bounded
    (:class:`JSONTooDeep`). Every failure is a ``ValueError`` with a clear message."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise JSONTooDeep(
            f"$: nested more than {max_depth} levels deep (objects and arrays)"
        ) from None
    check_depth(data, max_depth)
    return data


def to_jsonable(value: Any, *, limit: int = 100_000) -> Any:
    """Turn any value into JSON data for serialization, never raising.

    JSON data passes through (tuples become lists); objects with ``to_json()`` are asked;
    snapshots are materialized; attrs instances become dicts; anything else is summarized as
    ``{"$type": ..., "$repr": ...}`` so a sink can always write the event.
    """
    try:
        return _jsonable(value, limit, 0)
    except Exception as exc:  # noqa: BLE001 - serialization of telemetry must never fail
        return {"$type": type(value).__qualname__, "$error": f"{type(exc).__name__}: {exc}"}


def _jsonable(value: Any, limit: int, depth: int) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if depth > 50:
        return {"$type": t.__qualname__, "$repr": "<nested too deeply>"}
    if t is dict or (isinstance(value, Mapping) and not hasattr(value, "to_json")):
        return {str(k): _jsonable(v, limit, depth + 1) for k, v in value.items()}
    if t is list or t is tuple or t is set or t is frozenset or t is deque:
        return [_jsonable(v, limit, depth + 1) for v in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return _jsonable(to_json(), limit, depth + 1)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, limit, depth + 1)
    if isinstance(value, str):
        return "" + value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _jsonable(float(value), limit, depth)
    if hasattr(type(value), "__attrs_attrs__"):
        return _jsonable(attrs.asdict(value, recurse=False), limit, depth + 1)
    if isinstance(value, BaseException):
        return {"$type": t.__qualname__, "$repr": str(value)[:limit]}
    if isinstance(value, (bytes, bytearray)):
        return {"$type": t.__qualname__, "$repr": summarize(bytes(value)[:200].hex(), 400)}
    text = repr(value)
    return {"$type": f"{t.__module__}.{t.__qualname__}", "$repr": text[:limit]}


def approx_size(
    value: Any, seen: set[int] | None = None, other: Callable[[Any], int] | None = None
) -> int:
    """An estimate of the bytes ``value`` keeps alive (CPython's object sizes, roughly), for
    budgets that bound memory (the event history's ``history_bytes``). Walks JSON data,
    tuples (events and payloads are named tuples), mappings and :class:`ListPrefix`
    iteratively; an object already in ``seen`` (ids) counts once; any other object counts
    ``other(obj)`` (default: its own ``sys.getsizeof``, nothing it refers to)."""
    if seen is None:
        seen = set()
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            total += 49 + len(item)  # ASCII; wider text is counted short, never long
            continue
        if item is None or kind is bool:
            continue  # singletons
        if kind is int or kind is float:
            total += 28
            continue
        ident = id(item)
        if ident in seen:
            continue
        seen.add(ident)
        if kind is dict:
            total += 104 + 56 * len(item)
            push(item.keys())
            push(item.values())
        elif kind is list or isinstance(item, tuple):
            total += 56 + 8 * len(item)
            push(item)
        elif kind is ListPrefix:
            total += 48
            push(item.items[: item.length])
        elif kind is bytes or kind is bytearray:
            total += 33 + len(item)
        elif isinstance(item, Mapping):
            total += 104 + 56 * len(item)
            push(item.keys())
            push(item.values())
        elif other is not None:
            total += other(item)
        else:
            total += sys.getsizeof(item, 64)
    return total
