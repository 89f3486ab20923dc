"""``extract_keywords``: the most frequent content words of a text, for tagging, search indexes
or a cheap "what is this about" before a model call. Needs the ``stopwords`` dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from backpackflow import Node

from backpackflow_example_nodes.contracts import Keyword, Text
from backpackflow_example_nodes.inputs import node_label, read_text
from backpackflow_example_nodes.params import ExtractKeywordsParams
from backpackflow_example_nodes.text import words

if TYPE_CHECKING:
    from backpackflow import BackpackView

#: The dependency this node type declares at registration (the flow must provide it).
STOPWORDS = "stopwords"


class ExtractKeywordsNode(Node):
    """Ranks the words of a text by frequency, leaving out stopwords, short words and numbers.

    Writes ``[{term, count}, ...]`` (most frequent first, ties in order of first occurrence) to
    ``params.target``. Terms are lower-cased.
    """

    Params = ExtractKeywordsParams
    #: The data contract: the key ``params.source`` names holds the text; the node writes
    #: its result under the key ``params.target`` names.
    reads = {"{source}": Text}
    writes = {"{target}": list[Keyword]}
    params: ExtractKeywordsParams

    def prep(self, backpack: BackpackView) -> str:
        return read_text(backpack, self, "source", self.params.source)

    def exec(self, prep_res: str) -> list[dict[str, Any]]:
        stopwords = self.dependency(STOPWORDS)
        if not isinstance(stopwords, Container):
            raise TypeError(
                f"{node_label(self)}: dependency {STOPWORDS!r} must support 'word in "
                f"stopwords' (a set of words), got {type(stopwords).__name__}"
            )
        p = self.params
        counts: Counter[str] = Counter()
        for word in words(prep_res):
            term = word.casefold()
            if len(term) < p.min_length or term in stopwords:
                continue
            if not p.include_numbers and term.replace("-", "").isdigit():
                continue
            counts[term] += 1
        # Counter keeps first-insertion order and most_common() sorts stably: ties stay in order
        # of first occurrence, so the result is deterministic
        return [
            {"term": term, "count": n}
            for term, n in counts.most_common()[: p.top_k]
            if n >= p.min_count
        ]

    def post(
        self, backpack: BackpackView, prep_res: str, exec_res: list[dict[str, Any]]
    ) -> str | None:
        backpack.pack(self.params.target, exec_res)
        return None
