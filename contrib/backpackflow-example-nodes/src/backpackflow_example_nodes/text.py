"""Tokenizing text into words, sentences and paragraphs: one definition shared by the nodes, so
a "word" counted by ``text_stats`` is the same word ``extract_keywords`` ranks."""

from __future__ import annotations

import re

#: Letters and digits, with inner apostrophes or hyphens ("don't", "state-of-the-art").
WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def words(text: str) -> list[str]:
    """The words of ``text``, in order."""
    return WORD.findall(text)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: pieces ending in ``. ! ? …`` that hold at least one word."""
    return [s.strip() for s in _SENTENCE_END.split(text) if WORD.search(s)]


def paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text``: pieces separated by blank lines that hold at least one word."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if WORD.search(p)]
