"""Reading a node's input from the Backpack, with errors that name the node, the param and the
key, so a flow author sees at once which node read what."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from backpackflow import BackpackFlowError, KeyNotFound

if TYPE_CHECKING:
    from backpackflow import BackpackView, BaseNode

_MISSING: Final = object()
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class NodeInputError(BackpackFlowError, TypeError):
    """A Backpack value a node reads has the wrong type; the message names node, param and key."""


def node_label(node: BaseNode) -> str:
    """``text_stats node 'stats'``: the registered type (or class) and the id."""
    return f"{node.node_type or type(node).__name__} node {node.id!r}"


def read_text(backpack: BackpackView, node: BaseNode, field: str, key: str) -> str:
    """The text under ``key`` (named by ``params.<field>``): a string, or a list of strings
    joined as paragraphs. Missing keys raise :class:`~backpackflow.KeyNotFound`, other values
    :class:`NodeInputError`."""
    value: Any = backpack.unpack(key, _MISSING)
    if value is _MISSING:
        if backpack.has(key):
            reason = "which this node may not read (denied by its permissions)"
        else:
            keys = backpack.keys()
            shown = ", ".join(repr(k) for k in keys[:20]) + (" ..." if len(keys) > 20 else "")
            reason = f"which is not in the Backpack (keys: {shown or 'none'})"
        raise KeyNotFound(f"{node_label(node)}: params.{field} names key {key!r}, {reason}")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n\n".join(value)
    raise NodeInputError(
        f"{node_label(node)}: key {key!r} (params.{field}) holds "
        f"{_JSON_TYPES.get(type(value), type(value).__name__)}; expected a string or an array "
        "of strings"
    )
