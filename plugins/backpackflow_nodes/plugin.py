"""Registers the ``llm``, ``agent``, ``tool``, ``router`` and ``approval`` node types and the
built-in tools."""

from __future__ import annotations

import sys

from backpackflow import hookimpl
from backpackflow.plugins import NodeTypeRegistrar, ToolRegistrar
from backpackflow_nodes.agent import AgentNode, AgentParams
from backpackflow_nodes.approval import ApprovalNode, ApprovalParams
from backpackflow_nodes.llm import LLMNode, LLMParams
from backpackflow_nodes.router import RouterNode, RouterParams
from backpackflow_nodes.tool import ToolNode, ToolParams
from backpackflow_nodes.tools import BUILTIN_TOOLS

#: Where each node writes its result: ``params.output_key``, else its id. (What they read is
#: what their templates and rules name, resolved at run time.)
OUTPUT_KEY = "{output_key|id}"


@hookimpl
def backpackflow_register_node_types(register: NodeTypeRegistrar) -> None:
    register(
        "llm",
        LLMNode,
        params=LLMParams,
        description="call a language model with a templated prompt",
        writes={
            OUTPUT_KEY: {
                "description": "the model's answer: text, or with response_format 'json' the "
                "JSON value it parsed to"
            }
        },
    )
    register(
        "tool",
        ToolNode,
        params=ToolParams,
        description="call a registered tool",
        writes={OUTPUT_KEY: {"description": "the tool's result"}},
    )
    register(
        "agent",
        AgentNode,
        params=AgentParams,
        description="a model calling tools in a loop until it answers (ReAct)",
    )
    register(
        "router",
        RouterNode,
        params=RouterParams,
        description="set a branch from a rule (CEL or JSON Logic)",
        writes={OUTPUT_KEY: {"type": "string", "description": "the branch taken"}},
    )
    register(
        "approval",
        ApprovalNode,
        params=ApprovalParams,
        description="pause the run until a person approves or rejects (actions approved, "
        "rejected, timeout)",
        writes={
            OUTPUT_KEY: {
                "type": "object",
                "description": "the answer: approved (true/false, null on timeout), comment, "
                "timed_out",
            }
        },
    )


@hookimpl
def backpackflow_register_tools(register: ToolRegistrar) -> None:
    for name, (function, params) in BUILTIN_TOOLS.items():
        register(name, function, params=params)


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
