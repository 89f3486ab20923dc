"""``text_stats``: word, sentence and paragraph counts and reading time of a text, so a flow can
branch on length (``"when": "words < 50"``) or budget a summary before calling a model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from backpackflow import Node

from backpackflow_example_nodes.contracts import Text, TextStats
from backpackflow_example_nodes.inputs import read_text
from backpackflow_example_nodes.params import TextStatsParams
from backpackflow_example_nodes.text import paragraphs, sentences, words

if TYPE_CHECKING:
    from backpackflow import BackpackView

TOO_SHORT = "too_short"


class TextStatsNode(Node):
    """Counts words, sentences and paragraphs of a text and estimates its reading time.

    Writes ``{characters, words, sentences, paragraphs, avg_sentence_words,
    reading_time_seconds}`` to ``params.target``; returns ``"too_short"`` when the text has fewer
    than ``params.min_words`` words, else the default action.
    """

    Params = TextStatsParams
    #: The data contract: the key ``params.source`` names holds the text; the node writes
    #: its result under the key ``params.target`` names.
    reads = {"{source}": Text}
    writes = {"{target}": TextStats}
    params: TextStatsParams

    def prep(self, backpack: BackpackView) -> str:
        return read_text(backpack, self, "source", self.params.source)

    def exec(self, prep_res: str) -> dict[str, Any]:
        text = prep_res
        n_words = len(words(text))
        n_sentences = len(sentences(text))
        return {
            "characters": len(text),
            "words": n_words,
            "sentences": n_sentences,
            "paragraphs": len(paragraphs(text)),
            "avg_sentence_words": round(n_words / n_sentences, 2) if n_sentences else 0.0,
            "reading_time_seconds": math.ceil(n_words * 60 / self.params.words_per_minute),
        }

    def post(self, backpack: BackpackView, prep_res: str, exec_res: dict[str, Any]) -> str | None:
        target = self.params.target or f"{self.params.source}_stats"
        backpack.pack(target, exec_res)
        min_words = self.params.min_words
        if min_words is not None and exec_res["words"] < min_words:
            return TOO_SHORT
        return None
