"""Compiling edge conditions (and router rules) from flow configs.

A string is an expression in the default string language (``cel``: ``"branch == 'deep'"``); a
JSON object is JSON Logic (``{"==": [{"var": "intent"}, "sales"]}``). The languages themselves are
plugins (``backpackflow_register_condition_languages``), so the kernel stays free of their
dependencies. A compiled condition is callable with the condition context and remembers its
source, so flows export back exactly as they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from backpackflow.errors import ConfigError, PluginError

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.plugins import Registry

STRING_LANGUAGE = "cel"
OBJECT_LANGUAGE = "jsonlogic"


class CompiledCondition:
    """A condition compiled from config: ``condition(context)`` evaluates it; ``source`` is
    what the config said (exported unchanged)."""

    __slots__ = ("_evaluate", "language", "source")

    def __init__(
        self, language: str, source: Any, evaluate: Callable[[Mapping[str, Any]], Any]
    ) -> None:
        self.language = language
        self.source = source
        self._evaluate = evaluate

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self._evaluate(context)

    def with_source(self, source: Any) -> CompiledCondition:
        """The same condition, shown and exported as ``source`` (the text as the config wrote
        it, with ``${NAME}`` references rather than their values)."""
        return CompiledCondition(self.language, source, self._evaluate)

    def __repr__(self) -> str:
        return f"CompiledCondition({self.language}: {self.source!r})"


def compile_condition(source: Any, registry: Registry, *, where: str) -> CompiledCondition:
    """Compile ``source`` (string or JSON Logic object); errors name ``where`` (an edge)."""
    if isinstance(source, str):
        language = STRING_LANGUAGE
        if not source.strip():
            raise ConfigError(f"{where}: the condition is empty")
    elif isinstance(source, dict):
        language = OBJECT_LANGUAGE
    else:
        raise ConfigError(
            f"{where}: a condition is an expression string or a JSON Logic object, got "
            f"{type(source).__name__}"
        )
    try:
        lang = registry.condition_language(language)
    except PluginError as exc:
        raise ConfigError(
            f"{where}: conditions in {language} need a plugin providing that language: {exc}"
        ) from None
    try:
        evaluate = lang.compile(source)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ConfigError(f"{where}: invalid {language} condition {source!r}: {exc}") from None
    return CompiledCondition(language, source, evaluate)
