"""What the sinks and the inspector share: the config error, option checks, usage and cost
extraction, truncation, and error logging that never floods."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from backpackflow import ConfigError

log = logging.getLogger("backpackflow.sinks")


class SinkConfigError(ConfigError):
    """A sink's options are unusable (bad URL, unwritable path, out-of-range number). Raised when
    the sink is built, before any run starts; names the sink and the option."""

    def __init__(self, sink: str, option: str, problem: str) -> None:
        message = f"sink {sink!r}: option {option!r}: {problem}"
        super().__init__(message, [f"$.{option}: {problem}"])
        self.sink = sink
        self.option = option


def check_type(sink: str, option: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """Options built in Python skip cattrs; catch a wrong type here with a clear message."""
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise SinkConfigError(sink, option, f"expected a number, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SinkConfigError(sink, option, f"expected {names}, got {type(value).__name__}")


def check_positive(sink: str, option: str, value: Any, *, allow_zero: bool = False) -> None:
    check_type(sink, option, value, (int, float))
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SinkConfigError(sink, option, f"must be a finite number {bound}, got {value!r}")


def check_choice(sink: str, option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SinkConfigError(
            sink, option, f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )


class OnceLog:
    """Logs the first failure of each kind with its traceback, then only counts: a sink that
    fails on every event must not flood the log of the run it observes."""

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._seen: set[str] = set()

    def warning(self, kind: str, message: str) -> None:
        """An expected failure (an endpoint answering 500): no traceback to show."""
        if kind in self._seen:
            return
        self._seen.add(kind)
        log.warning("sink %r: %s (later ones are only counted in its report)", self._sink, message)

    def error(self, what: str, exc: BaseException) -> None:
        if what in self._seen:
            return
        self._seen.add(what)
        log.error(
            "sink %r: %s: %s: %s (later failures of this kind are only counted in its report)",
            self._sink,
            what,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )


# ------------------------------------------------------------------------------ LLM usage


def usage_tokens(usage: Any) -> tuple[int, int]:
    """(input, output) tokens of an ``llm_response`` / ``cache_hit`` usage, whatever its shape:
    a ``Usage`` object, its JSON (``input_tokens``/``output_tokens``) or OpenAI-style names."""
    if usage is None:
        return 0, 0
    if not isinstance(usage, Mapping):
        usage = {
            name: getattr(usage, name, None)
            for name in ("input_tokens", "output_tokens", "prompt_tokens", "completion_tokens")
        }
    tin = usage.get("input_tokens", usage.get("prompt_tokens"))
    tout = usage.get("output_tokens", usage.get("completion_tokens"))
    return _count(tin), _count(tout)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def decimal_or_none(value: Any) -> Decimal | None:
    """An exact cost from its decimal string (events carry costs as strings); None if unusable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def format_cost(cost: Decimal) -> str:
    """``$0.0012``: the exact decimal, trailing zeros dropped, never in exponent form."""
    text = format(cost.normalize(), "f")
    return f"${text}"


def format_ms(ms: float | None) -> str:
    if ms is None or not isinstance(ms, (int, float)) or not math.isfinite(ms):
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{int(minutes)} min {seconds:.0f} s"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a note of what was left out (0: no limit)."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def tail(text: str, limit: int) -> str:
    """The end of ``text`` (a stack's last frames and the error matter most), 0: all."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"… ({len(text) - limit} earlier characters)\n{text[-limit:]}"
