"""``keyword_router``: classify a text against keyword lists and return the winning route as the
node's action, so a flow sends a ticket, a question or a document down the right branch
without a model call."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from backpackflow import Node

from backpackflow_example_nodes.contracts import Route, Text
from backpackflow_example_nodes.inputs import read_text
from backpackflow_example_nodes.params import KeywordRouterParams

if TYPE_CHECKING:
    from backpackflow import BackpackView


@functools.lru_cache(maxsize=1024)
def _word_pattern(keyword: str) -> re.Pattern[str]:
    # a keyword or phrase not glued to other letters or digits on either side
    return re.compile(r"(?<![^\W_])" + re.escape(keyword) + r"(?![^\W_])")


def count_hits(text: str, keyword: str, *, match: str, case_sensitive: bool) -> int:
    """How often ``keyword`` occurs in ``text`` (whole words or phrases, or anywhere)."""
    if not case_sensitive:
        text, keyword = text.casefold(), keyword.casefold()
    if match == "substring":
        return text.count(keyword)
    return len(_word_pattern(keyword).findall(text))


class KeywordRouterNode(Node):
    """Picks the route whose keywords occur in a text and returns its name as the action.

    The exec result, ``{branch, hits, matched}`` (``hits``: per route; ``matched``: the winning
    route's keywords found), is what edge conditions see and what ``params.target`` receives.
    """

    Params = KeywordRouterParams
    #: The data contract: the key ``params.source`` names holds the text; the node writes
    #: its result under the key ``params.target`` names.
    reads = {"{source}": Text}
    writes = {"{target}": Route}
    params: KeywordRouterParams

    def prep(self, backpack: BackpackView) -> str:
        return read_text(backpack, self, "source", self.params.source)

    def exec(self, prep_res: str) -> dict[str, Any]:
        p = self.params
        hits: dict[str, int] = {}
        found: dict[str, list[str]] = {}
        for route in p.routes:
            counts = {
                keyword: count_hits(
                    prep_res, keyword, match=p.match, case_sensitive=p.case_sensitive
                )
                for keyword in route.keywords
            }
            hits[route.name] = sum(counts.values())
            found[route.name] = [keyword for keyword, n in counts.items() if n]
        eligible = [route.name for route in p.routes if hits[route.name] >= p.min_hits]
        if not eligible:
            branch = p.fallback
        elif p.strategy == "first":
            branch = eligible[0]
        else:  # most_hits; max() keeps the first of equals, i.e. the earlier route
            branch = max(eligible, key=lambda name: hits[name])
        return {"branch": branch, "hits": hits, "matched": found.get(branch, [])}

    def post(self, backpack: BackpackView, prep_res: str, exec_res: dict[str, Any]) -> str:
        if self.params.target is not None:
            backpack.pack(self.params.target, exec_res)
        branch: str = exec_res["branch"]
        return branch
