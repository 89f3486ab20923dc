"""The one namespace and wildcard matcher used by the whole project.

A namespace is a dot-separated path such as ``sales.research.chat``. Each segment holds letters,
digits, ``_`` or ``-``; there are no empty segments, spaces or wildcards in a namespace itself.

Patterns (for permissions, queries and event subscriptions) add two wildcards:

* ``*`` matches exactly one segment: ``sales.*`` matches ``sales.chat`` but not ``sales`` or
  ``sales.chat.bot``; ``*.chat`` matches ``sales.chat``.
* ``**`` matches any number of segments, including none: ``sales.**`` matches ``sales``,
  ``sales.chat`` and ``sales.chat.bot``; ``a.**.b`` matches ``a.b`` and ``a.x.y.b``.

The same matcher serves keys in permission rules, where ``.`` separates segments the same way.
Compiled patterns are cached, so matching in hot paths is one regular-expression call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from backpackflow.errors import InvalidNamespace

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")

Matcher = Callable[[str], bool]


def validate_namespace(namespace: str, *, where: str = "namespace") -> str:
    """Return ``namespace`` unchanged if it is a valid definition, else raise ``InvalidNamespace``.

    ``where`` names the place in the error message (a key, a node id, a JSON path).
    """
    if type(namespace) is str and _NAMESPACE.fullmatch(namespace):
        return namespace
    raise InvalidNamespace(f"{where}: {_namespace_problem(namespace)}")


def _namespace_problem(namespace: object) -> str:
    if not isinstance(namespace, str):
        return f"a namespace must be a string, got {type(namespace).__name__}"
    if namespace == "":
        return "a namespace must not be empty (leave it out instead)"
    if "*" in namespace:
        return f"{namespace!r} contains a wildcard; wildcards belong in patterns, not namespaces"
    if any(ch.isspace() for ch in namespace):
        return f"{namespace!r} contains white space"
    for segment in namespace.split("."):
        if segment == "":
            return f"{namespace!r} has an empty segment (two dots, or a leading/trailing dot)"
        if not _SEGMENT.fullmatch(segment):
            return (
                f"{namespace!r} has segment {segment!r}; segments hold only letters, digits, "
                "'_' and '-'"
            )
    return f"{namespace!r} is not a valid namespace"  # pragma: no cover - all cases above


def join(*parts: str | None) -> str | None:
    """Compose namespaces down a graph: ``join("sales", "chat") == "sales.chat"``.

    ``None`` and empty parts are skipped; the result is ``None`` when nothing is left.
    """
    kept = [p for p in parts if p]
    return ".".join(kept) if kept else None


def is_pattern(text: str) -> bool:
    """True when ``text`` contains a wildcard."""
    return "*" in text


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Matcher:
    """Compile ``pattern`` into a fast ``matcher(name) -> bool``; cached per pattern string.

    Raises ``InvalidNamespace`` for malformed patterns (empty segments, ``a*b`` partial wildcards).
    """
    if type(pattern) is not str or pattern == "":
        raise InvalidNamespace(f"pattern must be a non-empty string, got {pattern!r}")
    segments = pattern.split(".")
    if "*" not in pattern:
        if "" in segments:
            raise InvalidNamespace(f"pattern {pattern!r} has an empty segment")
        return pattern.__eq__  # exact match: no regex needed
    # Match against "." + name so every segment, the first included, is "\.segment".
    parts: list[str] = []
    for segment in segments:
        if segment == "**":
            parts.append(r"(?:\.[^.]+)*")
        elif segment == "*":
            parts.append(r"\.[^.]+")
        elif segment == "":
            raise InvalidNamespace(f"pattern {pattern!r} has an empty segment")
        elif "*" in segment:
            raise InvalidNamespace(
                f"pattern {pattern!r}: segment {segment!r} mixes text and '*'; "
                "use '*' or '**' as a whole segment"
            )
        else:
            parts.append(r"\." + re.escape(segment))
    regex = re.compile("".join(parts))
    fullmatch = regex.fullmatch

    def matches(name: str) -> bool:
        return fullmatch("." + name) is not None

    return matches


def matches(pattern: str, name: str | None) -> bool:
    """True when ``name`` matches ``pattern``; ``None`` (no namespace) never matches."""
    if name is None:
        return False
    return compile_pattern(pattern)(name)


def matches_any(patterns: tuple[str, ...] | list[str], name: str | None) -> str | None:
    """Return the first pattern of ``patterns`` that ``name`` matches, or ``None``."""
    if name is None:
        return None
    for pattern in patterns:
        if compile_pattern(pattern)(name):
            return pattern
    return None
