"""Per-node permissions for Backpack keys and namespaces.

A node with no registered permissions may read and write everything. Registering permissions
restricts only the dimensions given: ``read``/``namespace_read`` restrict reads when either is
given, ``write``/``namespace_write`` restrict writes (packs, appends, overwrites and deletes) when
either is given. ``deny`` (key patterns) and ``namespace_deny`` (namespace patterns) always win.

Key patterns and namespace patterns use the project's one matcher (:mod:`backpackflow.namespaces`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from backpackflow.errors import SerializationError
from backpackflow.namespaces import compile_pattern, matches_any


def _patterns(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    patterns = tuple(value)
    for pattern in patterns:
        compile_pattern(pattern)  # raises InvalidNamespace naming the pattern
    return patterns


def _deny_patterns(value: Iterable[str] | str | None) -> tuple[str, ...]:
    return _patterns(value) or ()


@attrs.frozen
class Permissions:
    """What one node may read and write. ``None`` means "not restricted by this rule"."""

    read: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)
    write: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)
    namespace_read: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)
    namespace_write: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)
    deny: tuple[str, ...] = attrs.field(default=(), converter=_deny_patterns)
    namespace_deny: tuple[str, ...] = attrs.field(default=(), converter=_deny_patterns)

    def check_read(self, key: str, namespace: str | None) -> str | None:
        """Return ``None`` if reading ``key`` (stored under ``namespace``) is allowed, else the
        rule that refuses it, in words."""
        denied = self._denied(key, (namespace,))
        if denied:
            return denied
        if self.read is None and self.namespace_read is None:
            return None
        if self.read and matches_any(self.read, key):
            return None
        if self.namespace_read and matches_any(self.namespace_read, namespace):
            return None
        return _not_granted("read", key, self.read, (namespace,), self.namespace_read)

    def check_write(
        self, key: str, namespace: str | None, existing_namespace: str | None, exists: bool
    ) -> str | None:
        """Return ``None`` if writing ``key`` is allowed, else the refusing rule in words.

        A write puts the item under ``namespace``; when the key exists, the item currently lives
        under ``existing_namespace`` and both must be writable through a namespace grant.
        """
        namespaces = (namespace, existing_namespace) if exists else (namespace,)
        denied = self._denied(key, namespaces)
        if denied:
            return denied
        if self.write is None and self.namespace_write is None:
            return None
        if self.write and matches_any(self.write, key):
            return None
        if self.namespace_write and all(matches_any(self.namespace_write, ns) for ns in namespaces):
            return None
        return _not_granted("write", key, self.write, namespaces, self.namespace_write)

    def _denied(self, key: str, namespaces: tuple[str | None, ...]) -> str | None:
        if self.deny:
            pattern = matches_any(self.deny, key)
            if pattern:
                return f"deny pattern {pattern!r} matches key {key!r}"
        if self.namespace_deny:
            for ns in namespaces:
                pattern = matches_any(self.namespace_deny, ns)
                if pattern:
                    return f"namespace_deny pattern {pattern!r} matches namespace {ns!r}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "read": _listed(self.read),
            "write": _listed(self.write),
            "namespace_read": _listed(self.namespace_read),
            "namespace_write": _listed(self.namespace_write),
            "deny": list(self.deny),
            "namespace_deny": list(self.namespace_deny),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Permissions:
        unknown = set(data) - {f.name for f in attrs.fields(cls)}
        if unknown:
            raise SerializationError(f"unknown permission fields {sorted(unknown)}")
        return cls(**data)


def _listed(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


def _not_granted(
    op: str,
    key: str,
    key_rules: tuple[str, ...] | None,
    namespaces: tuple[str | None, ...],
    ns_rules: tuple[str, ...] | None,
) -> str:
    parts = [f"key {key!r} matches no {op} pattern {list(key_rules or ())}"]
    if ns_rules is not None:
        shown = ", ".join(repr(ns) for ns in namespaces)
        parts.append(f"namespace {shown} matches no namespace_{op} pattern {list(ns_rules)}")
    return " and ".join(parts)
