"""Text both databases store alike: no U+0000 and no lone surrogate, anywhere in a document;
and documents no deeper than :data:`MAX_DEPTH`, so that every one can be read back and sent.

PostgreSQL refuses U+0000 in ``text`` and ``jsonb``; a lone surrogate (``"\\ud800"`` in JSON)
is not Unicode at all: PostgreSQL refuses it, SQLite stores it as JSON text that later fails to
serialize (every list holding it answered 500). So the store applies one rule on both backends:

* data a user gives (workflow names and documents, run inputs) is *refused* when it holds such a
  character (:func:`unportable_problems` names the JSON path), before anything is written;
* data a run produces (trace event payloads, error texts) is *kept*, each such character
  replaced by U+FFFD (:func:`make_portable`), so a tool that read a binary file never loses the
  run's trace.

Depth is bounded the same way: user data nested deeper than :data:`MAX_DEPTH` is refused, run
output is cut there, and a document an older version stored deeper reads back cut (an HTTP
layer serializing it would fail: pydantic stops at 255 levels).

The walks are iterative (a document nested 100,000 deep must not raise RecursionError), and a
C-speed regular expression decides first whether a string needs looking at character by
character at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: U+0000 and every surrogate code point: what neither database holds as text.
UNPORTABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: The deepest nesting of objects and arrays the store keeps.
MAX_DEPTH = 200
#: What replaces a container nested deeper than the bound.
#: An escape in JSON text that may stand for U+0000 or a surrogate (``ensure_ascii`` writes
#: every surrogate so, and a valid pair as two: a false alarm that only costs a closer look).
_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
#: Keys a JSON path shows as ``.key`` (what ``backpackflow_server.validation`` parses back).
_PLAIN_KEY = re.compile(r"[^\s.\[\]:'\"\x00\ud800-\udfff]+")


def unportable_text(text: str) -> str | None:
    """Why ``text`` cannot be stored (``None``: it can)."""
    match = UNPORTABLE.search(text)
    if match is None:
        return None
    where = match.start()
    if match.group() == "\x00":
        return f"contains a NUL character (U+0000) at position {where}"
    code = ord(match.group())
    return f"contains a lone surrogate (U+{code:04X}, not Unicode text) at position {where}"


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{_quoted(key)}]"


def _quoted(key: str) -> str:
    """A key for a message: printable, with what cannot be printed escaped."""
    return repr(key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))


def _children(value: Any, path: str) -> Iterator[tuple[str, Any, str | None]]:
    """(path, child, key-problem) of a dict or list."""
    if isinstance(value, dict):
        for key, child in value.items():
            problem = unportable_text(key) if isinstance(key, str) else None
            yield _path(path, key), child, problem
    else:
        for index, child in enumerate(value):
            yield _path(path, index), child, None


def unportable_problems(
    document: Any, *, root: str = "$", max_depth: int | None = None, limit: int = 20
) -> list[str]:
    """``"$.path: message"`` for each string (key or value) the databases cannot store, and
    for nesting deeper than ``max_depth`` (containers inside containers; ``None``: no bound).

    Stops after ``limit`` problems: a client needs the first few, not a million.
    """
    problems: list[str] = []
    if isinstance(document, str):
        reason = unportable_text(document)
        return [] if reason is None else [f"{root}: {reason}"]
    if not isinstance(document, dict | list):
        return []
    stack: list[tuple[str, Any, int]] = [(root, document, 1)]
    while stack and len(problems) < limit:
        path, value, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            problems.append(
                f"{path}: nested {depth} levels deep; at most {max_depth} levels of objects "
                "and arrays are accepted"
            )
            continue
        children = []
        for child_path, child, key_problem in _children(value, path):
            if key_problem is not None:
                problems.append(f"{child_path}: the key {key_problem}")
            if isinstance(child, str):
                reason = unportable_text(child)
                if reason is not None:
                    problems.append(f"{child_path}: {reason}")
            elif isinstance(child, dict | list):
                children.append((child_path, child, depth + 1))
        stack.extend(reversed(children))  # report in document order
    return problems[:limit]


def may_be_unportable(text: str) -> bool:
    """Whether JSON text (``json.dumps`` output, with or without ``ensure_ascii``) may hold
    U+0000 or a lone surrogate. Never wrong when False; a True is checked by a walk. Costs a
    substring search, and for non-ASCII text an encoding -- not a regular expression scan of
    every character."""
    if "\\u" in text and _ESCAPE.search(text):
        return True
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a raw surrogate
            return True
    return False


def may_nest_deeper(text: str, depth: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` might nest deeper than ``depth`` (never wrong when False:
    a document cannot nest deeper than it has brackets, nor have more than half its
    length)."""
    return len(text) > 2 * depth and text.count("[") + text.count("{") > depth


def make_portable(value: Any, max_depth: int | None = None) -> Any:
    """A copy of ``value`` with U+0000 and lone surrogates replaced by U+FFFD in every string
    (keys too), and containers nested deeper than ``max_depth`` replaced by a marker string.
    Strings without those characters are shared, not copied."""
    if isinstance(value, str):
        return UNPORTABLE.sub(REPLACEMENT, value) if UNPORTABLE.search(value) else value
    if not isinstance(value, dict | list):
        return value
    marker = f"<cut: nested deeper than {max_depth} levels>"
    # Iterative copy: rebuild containers top-down so that depth cannot overflow the stack.
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 1)]
    while stack:
        source, target, slot, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            target[slot] = marker
            continue
        if isinstance(source, dict):
            copy: Any = {}
            for key, child in source.items():
                key = make_portable(key) if isinstance(key, str) else key
                copy[key] = child
                if isinstance(child, dict | list):
                    stack.append((child, copy, key, depth + 1))
                elif isinstance(child, str):
                    copy[key] = make_portable(child)
        else:
            copy = list(source)
            for index, child in enumerate(source):
                if isinstance(child, dict | list):
                    stack.append((child, copy, index, depth + 1))
                elif isinstance(child, str):
                    copy[index] = make_portable(child)
        target[slot] = copy
    return root[0]
