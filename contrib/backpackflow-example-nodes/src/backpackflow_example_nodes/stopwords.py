"""The ``stopwords`` dependency: the words ``extract_keywords`` ignores.

A dependency rather than a param because word lists are big, shared by many nodes and often
kept in files: the flow names it once in ``dependencies`` and the container builds it lazily,
once, when a node first asks for it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Set
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from backpackflow import ConfigError

from backpackflow_example_nodes.params import StopwordsOptions

if TYPE_CHECKING:
    from backpackflow.runner import DependencyContainer


@functools.cache
def builtin_words(name: str) -> frozenset[str]:
    """The builtin list ``name`` (``"english"``), shipped as package data in the format of
    ``config.path`` files and read once."""
    data = resources.files("backpackflow_example_nodes") / "data" / f"{name}.txt"
    text = data.read_text(encoding="utf-8")
    return frozenset(parse_word_list(text))


class Stopwords(Set[str]):
    """An immutable, case-insensitive set of words; ``source`` says where they came from."""

    def __init__(self, words: Iterable[str], source: str = "inline") -> None:
        self._words = frozenset(w.casefold() for w in words)
        self.source = source

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.casefold() in self._words

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._words))

    def __len__(self) -> int:
        return len(self._words)

    def __repr__(self) -> str:
        return f"Stopwords({len(self)} words from {self.source})"


def parse_word_list(text: str) -> list[str]:
    """The words of a word list: one per line, ``#`` starts a comment."""
    found = []
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            found.append(word)
    return found


def build_stopwords(options: StopwordsOptions, container: DependencyContainer) -> Stopwords:
    """The factory registered as ``stopwords``: builtin list + file + ``words`` - ``keep``."""
    words: set[str] = set(builtin_words(options.builtin)) if options.builtin != "none" else set()
    sources = [f"builtin {options.builtin}"] if options.builtin != "none" else []
    if options.path is not None:
        path = Path(options.path)
        try:
            words.update(parse_word_list(path.read_text(encoding=options.encoding)))
        except (OSError, UnicodeDecodeError, LookupError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(
                f"dependency factory 'stopwords': cannot read the word list {str(path)!r} "
                f"(config.path, resolved against {Path.cwd()}): {reason}"
            ) from None
        sources.append(str(path))
    words.update(options.words)
    if options.words:
        sources.append("config.words")
    drop = {w.casefold() for w in options.keep}
    return Stopwords(
        (w for w in words if w.casefold() not in drop), source=", ".join(sources) or "nothing"
    )
