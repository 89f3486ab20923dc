"""JSON data: validated copies in, independent copies out, type-exact equality.

The Backpack stores only JSON data so that every state can be serialized, diffed and replayed.
``copy_in`` validates and copies in one pass (tuples become lists, as ``json`` would write them);
``copy_out`` hands callers a copy they may mutate freely. Scalars are immutable and are shared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

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
