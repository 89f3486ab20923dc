"""Text node types for backpackflow, installed as a plugin of its own (entry point group
``backpackflow``): ``text_stats``, ``keyword_router``, ``extract_keywords`` and the
``stopwords`` dependency factory. Also the worked example of docs/write-a-node-package.md."""

from backpackflow_example_nodes.inputs import NodeInputError
from backpackflow_example_nodes.keywords import ExtractKeywordsNode
from backpackflow_example_nodes.params import (
    ExtractKeywordsParams,
    KeywordRouterParams,
    Route,
    StopwordsOptions,
    TextStatsParams,
)
from backpackflow_example_nodes.router import KeywordRouterNode
from backpackflow_example_nodes.stats import TextStatsNode
from backpackflow_example_nodes.stopwords import Stopwords, build_stopwords

__version__ = "0.1.0"

__all__ = [
    "ExtractKeywordsNode",
    "ExtractKeywordsParams",
    "KeywordRouterNode",
    "KeywordRouterParams",
    "NodeInputError",
    "Route",
    "Stopwords",
    "StopwordsOptions",
    "TextStatsNode",
    "TextStatsParams",
    "__version__",
    "build_stopwords",
]
