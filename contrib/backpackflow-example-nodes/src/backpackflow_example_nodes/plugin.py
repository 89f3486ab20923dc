"""The plugin module the ``backpackflow`` entry point names: it registers the node types and the
dependency factory. It holds no logic of its own, so importing it for discovery stays cheap."""

from __future__ import annotations

import sys

from backpackflow import hookimpl
from backpackflow.plugins import DependencyFactoryRegistrar, NodeTypeRegistrar

from backpackflow_example_nodes.keywords import STOPWORDS, ExtractKeywordsNode
from backpackflow_example_nodes.params import StopwordsOptions
from backpackflow_example_nodes.router import KeywordRouterNode
from backpackflow_example_nodes.stats import TextStatsNode
from backpackflow_example_nodes.stopwords import build_stopwords


@hookimpl
def backpackflow_register_node_types(register: NodeTypeRegistrar) -> None:
    # params come from each class's Params; the description from its docstring's first line
    register("text_stats", TextStatsNode)
    register("keyword_router", KeywordRouterNode)
    register("extract_keywords", ExtractKeywordsNode, dependencies=[STOPWORDS])


@hookimpl
def backpackflow_register_dependency_factories(register: DependencyFactoryRegistrar) -> None:
    register(
        "stopwords",
        build_stopwords,
        options=StopwordsOptions,
        description="words extract_keywords ignores: builtin list, a word file, extra words",
    )


#: What the entry point names ("backpackflow_example_nodes.plugin:plugin"): this module.
plugin = sys.modules[__name__]
