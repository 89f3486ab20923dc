"""The FlowTrace workflow shape (``"version": "1"``) migrated to flow config ``2.0.0``.

FlowTrace documents look like::

    {"version": "1", "entry": "ingest",
     "nodes": [{"id": "ingest", "type": "tool", "name": "FetchDocs", "config": {"url": "..."}},
               {"id": "summarize", "type": "llm", "config": {"provider": "openai", ...},
                "inputs": {"text": "{{node.ingest.output.content}}"}},
               {"id": "decide", "type": "router", "config": {"rule": "len(text)>2000 ? ..."}}],
     "edges": [{"from": "decide", "to": "deep", "when": "branch=='deep'"}],
     "limits": {"maxNodes": 20, "maxTokens": 150000, "timeoutSeconds": 120}}

What changes: ``config`` becomes ``params``; an llm node without a prompt gets one made of its
inputs (FlowTrace sends the inputs as the message); a tool node given only a ``url`` becomes an
``http_fetch`` call allowed to reach that URL's host; limits are renamed (``maxNodes`` →
``max_steps``, ``maxTokens`` → ``max_tokens``, ``timeoutSeconds`` → ``timeout``,
``maxCostUsd`` → ``max_cost``). Edges and ``when`` expressions are kept: FlowTrace's
``branch=='deep'`` and ``len(text) > 2000 ? 'deep' : 'shallow'`` are valid CEL here. Anything
the migration does not understand is an error naming its path, never dropped.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from backpackflow import ConfigError, hookimpl
from backpackflow.config import CURRENT_VERSION
from backpackflow.plugins import MigrationRegistrar

_TOP_LEVEL = {"version", "name", "description", "entry", "nodes", "edges", "limits", "namespace"}
_NODE_KEYS = {"id", "type", "name", "config", "inputs", "namespace"}
_EDGE_KEYS = {"from", "to", "when", "condition"}
_LIMITS = {
    "maxNodes": "max_steps",
    "maxTokens": "max_tokens",
    "timeoutSeconds": "timeout",
    "maxCostUsd": "max_cost",
}


def _unknown(data: dict[str, Any], known: set[str], path: str, problems: list[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        problems.append(
            f"{path}: FlowTrace field(s) {extra} have no equivalent (known: {sorted(known)})"
        )


def _llm_params(config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    params = dict(config)
    if "prompt" not in params:
        names = list(inputs)
        if len(names) == 1:
            params["prompt"] = "{{ " + names[0] + " }}"
        elif names:
            params["prompt"] = "\n\n".join(f"{name}:\n{{{{ {name} }}}}" for name in names)
    return params


def _tool_params(config: dict[str, Any], path: str, problems: list[str]) -> dict[str, Any]:
    if "tool" in config:
        return {
            "tool": config["tool"],
            "arguments": {k: v for k, v in config.items() if k != "tool"},
        }
    url = config.get("url")
    if not isinstance(url, str):
        problems.append(f"{path}.config: a FlowTrace tool node needs 'tool' or 'url'")
        return dict(config)
    arguments = {k: v for k, v in config.items() if k != "url"}
    host = urlsplit(url).hostname
    arguments.setdefault("allowed_hosts", [host] if host else [])
    return {"tool": "http_fetch", "arguments": {"url": url, **arguments}}


def migrate_flowtrace_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A FlowTrace ``version 1`` workflow document as a ``2.0.0`` flow config."""
    problems: list[str] = []
    _unknown(document, _TOP_LEVEL, "$", problems)
    nodes = []
    for i, node in enumerate(document.get("nodes") or []):
        path = f"$.nodes[{i}]"
        if not isinstance(node, dict):
            problems.append(f"{path}: a node is an object")
            continue
        _unknown(node, _NODE_KEYS, path, problems)
        config = node.get("config") or {}
        inputs = node.get("inputs") or {}
        if not isinstance(config, dict) or not isinstance(inputs, dict):
            problems.append(f"{path}: 'config' and 'inputs' are objects")
            continue
        kind = node.get("type")
        if kind == "llm":
            params = _llm_params(config, inputs)
        elif kind == "tool":
            params = _tool_params(config, path, problems)
        else:
            params = dict(config)
        migrated = {k: v for k, v in node.items() if k not in ("config", "inputs")}
        migrated["params"] = params
        if inputs:
            migrated["inputs"] = inputs
        nodes.append(migrated)
    edges = []
    for i, edge in enumerate(document.get("edges") or []):
        if isinstance(edge, dict):
            _unknown(edge, _EDGE_KEYS, f"$.edges[{i}]", problems)
        edges.append(edge)
    result: dict[str, Any] = {
        k: v for k, v in document.items() if k not in ("version", "nodes", "edges", "limits")
    }
    result["version"] = CURRENT_VERSION
    result["nodes"] = nodes
    result["edges"] = edges
    limits = document.get("limits")
    if limits is not None:
        if not isinstance(limits, dict):
            problems.append("$.limits: limits are an object")
        else:
            _unknown(limits, set(_LIMITS), "$.limits", problems)
            migrated_limits = {_LIMITS[k]: v for k, v in limits.items() if k in _LIMITS}
            cost = migrated_limits.get("max_cost")
            if type(cost) in (int, float):  # an exact, positional decimal string: 1e-07 is
                migrated_limits["max_cost"] = format(Decimal(repr(cost)), "f")  # "0.0000001"
            result["limits"] = migrated_limits
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return result


@hookimpl
def backpackflow_register_migrations(register: MigrationRegistrar) -> None:
    register(
        "1",
        CURRENT_VERSION,
        migrate_flowtrace_v1,
        description="FlowTrace workflow documents (version 1)",
    )


#: What the entry point names ("<module>:plugin"): this module itself.
plugin = sys.modules[__name__]
