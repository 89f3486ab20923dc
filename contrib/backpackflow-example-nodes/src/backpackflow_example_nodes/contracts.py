"""The data contracts of the node types: the Python types of what they read and write. The
kernel turns them into JSON Schemas (as it does params classes), checks at load that every key
a node reads is written upstream, and at run time that each value matches."""

from __future__ import annotations

from typing import TypedDict

#: What every node reads: a text, or paragraphs as a list of strings.
Text = str | list[str]


class TextStats(TypedDict):
    """What ``text_stats`` writes."""

    characters: int
    words: int
    sentences: int
    paragraphs: int
    avg_sentence_words: float
    reading_time_seconds: int


class Route(TypedDict):
    """What ``keyword_router`` writes: the branch and the keyword hits per route."""

    branch: str
    hits: dict[str, int]
    matched: list[str]


class Keyword(TypedDict):
    """One ranked term of ``extract_keywords``."""

    term: str
    count: int
