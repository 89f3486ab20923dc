"""Secret masking: values a flow must never show (resolved ``${NAME}`` references, API keys read
from the environment, signing keys of sinks) replaced wherever they appear in an event.

A :class:`SecretMasker` holds the secrets of one flow. A run whose flow has one emits every event
through it (see :class:`backpackflow.runner.Run`): each payload field is copied with every
occurrence of a secret replaced by the reference it came from (``${OPENAI_API_KEY}``) or
``***``, so sinks, stores, streams and exports see only masked values, whichever node or plugin
produced them, and values derived from a secret (a prompt or a tool result that contains it) are
masked too. A run without a masker pays nothing; a masker with no secrets costs one check per
event.

What is matched: the secret as written, and its JSON-escaped and URL-encoded forms (a secret
inside JSON text, a query string). Values shorter than :data:`MIN_SECRET_LENGTH` are not
masked: a three-letter value would turn every occurrence of those letters into stars; they are
still never shown where the config referenced them (params are exported and shown as written).
Not matched: transformations of a secret (base64, upper case) and a secret split across two
``stream_chunk`` events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, quote_plus

from backpackflow.jsondata import to_jsonable

#: Secrets shorter than this are not masked by substring (see the module docstring).
MIN_SECRET_LENGTH = 6
#: What a secret of no known name is replaced with.
MASK = "***"
#: The dependency name a loaded flow's masker is registered under, for dependency factories
#: that read secrets of their own (an API key from ``api_key_env``).
SECRETS = "secrets"

_MAX_DEPTH = 200


class SecretMasker:
    """The secrets of one flow and the masking of values that may contain them (thread-safe:
    secrets may be added from any thread while events are being masked)."""

    __slots__ = ("_lock", "_needles")

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        #: (text to find, replacement), longest first; replaced as a whole tuple on add
        self._needles: tuple[tuple[str, str], ...] = ()
        for name, value in (secrets or {}).items():
            self.add(value, name=name)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __len__(self) -> int:
        return len({replacement for _, replacement in self._needles})

    def __repr__(self) -> str:  # never the values
        return f"SecretMasker({len(self._needles)} patterns)"

    def add(self, value: str, *, name: str | None = None) -> None:
        """Mask ``value`` from now on; ``name`` (an environment variable) makes the replacement
        ``${NAME}`` instead of ``***``."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        replacement = f"${{{name}}}" if name else MASK
        forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe="")}
        forms.add(quote_plus(value, safe=""))
        with self._lock:
            known = {needle for needle, _ in self._needles}
            added = [(form, replacement) for form in forms if form not in known]
            if added:
                needles = [*self._needles, *added]
                needles.sort(key=lambda pair: -len(pair[0]))
                self._needles = tuple(needles)

    def add_all(self, other: SecretMasker) -> None:
        """Mask what ``other`` masks too."""
        with self._lock:
            merged = dict(self._needles)
            merged.update(other._needles)
            self._needles = tuple(sorted(merged.items(), key=lambda pair: -len(pair[0])))

    # -------------------------------------------------------------- masking

    def mask_text(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for needle, replacement in self._needles:
            if needle in text:
                text = text.replace(needle, replacement)
        return text

    def mask(self, value: Any) -> Any:
        """``value`` (JSON data, or anything an event payload holds) with every secret in its
        strings (keys included) replaced; the same object when nothing needed masking. Objects
        that are not JSON data are turned into JSON data first (``to_json()`` and the like)."""
        if not self._needles:
            return value
        return self._mask(value, 0)

    def mask_payload(self, payload: Any) -> Any:
        """An event payload with every field masked; a named tuple stays a named tuple of its
        class (sinks read fields by name), lazy state snapshots stay lazy. (Called for every
        event of a run with secrets: scalars and strings are handled inline.)"""
        needles = self._needles
        if not needles:
            return payload
        kind = type(payload)
        if not (kind in _RECORDS or _is_record(kind)):
            return self._mask(payload, 0)
        masked = []
        changed = False
        for value in payload:
            t = type(value)
            if t is str:
                new = value
                for needle, replacement in needles:
                    if needle in new:
                        new = new.replace(needle, replacement)
            elif value is None or t is int or t is float or t is bool:
                new = value
            else:
                new = self._mask(value, 1)
            if new is not value:
                changed = True
            masked.append(new)
        return tuple.__new__(kind, masked) if changed else payload

    def _mask(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str:
            return self.mask_text(value)
        if value is None or t is int or t is float or t is bool:
            return value
        if depth > _MAX_DEPTH:
            return MASK  # nothing this deep is shown unmasked
        if _is_lazy(t):
            return MaskedLazy(value, self)
        if (
            t is dict
            or t is MappingProxyType
            or (isinstance(value, Mapping) and not hasattr(value, "to_json"))
        ):
            changed = False
            out = {}
            for key, item in value.items():
                new_key = self.mask_text(key) if type(key) is str else key
                new_item = self._mask(item, depth + 1)
                changed = changed or new_key is not key or new_item is not item
                out[new_key] = new_item
            return out if changed else value
        if t is list or t is tuple:
            for i, item in enumerate(value):  # copy only from the first item that changes
                new = self._mask(item, depth + 1)
                if new is not item:
                    rest = [self._mask(other, depth + 1) for other in value[i + 1 :]]
                    items = [*value[:i], new, *rest]
                    return items if t is list else tuple(items)
            return value
        if isinstance(value, str):  # str subclasses (enums): their text
            return self.mask_text("" + value)
        if isinstance(value, (int, float)):
            return value
        # anything else (to_json() objects, attrs instances, exceptions ...) as JSON data now:
        # a masked run shows what the object serializes to, with secrets masked
        return self._mask(to_jsonable(value), depth + 1)


class MaskedLazy:
    """A lazy payload part (a Backpack state snapshot) that is masked when it is serialized."""

    __slots__ = ("_masker", "_value")

    def __init__(self, value: Any, masker: SecretMasker) -> None:
        self._value = value
        self._masker = masker

    def to_json(self) -> Any:
        return self._masker.mask(to_jsonable(self._value))

    def __repr__(self) -> str:
        return f"MaskedLazy({type(self._value).__name__})"


#: Named-tuple classes seen as payloads (masked field by field, keeping their class).
_RECORDS: set[type] = set()


def _is_record(kind: type) -> bool:
    if issubclass(kind, tuple) and hasattr(kind, "_fields"):
        _RECORDS.add(kind)
        return True
    return False


def _is_lazy(kind: type) -> bool:
    """Lazy state snapshots (kept lazy, masked when serialized): their classes say so with
    ``lazy_json = True`` (the Backpack's Snapshot and SnapshotRef), so this layer needs no
    Backpack."""
    return getattr(kind, "lazy_json", False) is True


#: Option and config names whose string values are secrets wherever they are given (a webhook's
#: ``secret``, a provider's ``api_key``, an ``Authorization`` header).
_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "authorization")


def is_secret_name(name: str) -> bool:
    """Whether an option or header called ``name`` holds a secret."""
    lowered = name.lower().replace("-", "_")
    if lowered.endswith("_env"):  # the name of a variable holding one (api_key_env)
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def collect_named_secrets(data: Any, masker: SecretMasker, *, depth: int = 0) -> None:
    """Add every string value of ``data`` (options, a dependency's config) whose key names a
    secret (:func:`is_secret_name`) to ``masker``."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, str) and isinstance(key, str) and is_secret_name(key):
                masker.add(value)
            else:
                collect_named_secrets(value, masker, depth=depth + 1)
    elif isinstance(data, list):
        for item in data:
            collect_named_secrets(item, masker, depth=depth + 1)


__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRETS",
    "MaskedLazy",
    "SecretMasker",
    "collect_named_secrets",
    "is_secret_name",
]
