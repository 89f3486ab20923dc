"""The ``tool`` node: calls a registered tool with templated arguments, traced as
``tool_request`` / ``tool_response`` events."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from pathlib import Path
from typing import Annotated, Any

import attrs
import msgspec

from backpackflow import AsyncNode, BackpackView, ConfigError, PluginError, current_run
from backpackflow.config import EnvRefs, restore_env_refs, structure
from backpackflow.events import (
    StreamEventType,
    ToolCallPayload,
    ToolResponsePayload,
    exception_text,
)
from backpackflow.jsondata import to_jsonable
from backpackflow.loader import FLOW_DIR
from backpackflow.plugins import ToolType
from backpackflow.policy import SandboxPolicy, SandboxViolation, TemplateBudget, policy_of
from backpackflow.runner import current_run_or_none
from backpackflow_nodes.templating import Bindings, Template, base_context, off_loop
from backpackflow_nodes.tools import ToolContext


@attrs.frozen(kw_only=True)
class ToolParams:
    """Params of a tool node: the ``tool`` to call and its ``arguments`` (values may be
    templates); ``base_dir`` (relative to the flow's folder) is where file tools read."""

    tool: Annotated[str, msgspec.Meta(min_length=1, description="a registered tool name")]
    arguments: dict[str, Any] = attrs.field(factory=dict)
    output_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    base_dir: str | None = None


class ToolArguments:
    """The arguments of one tool call. Events (``prep_complete``, ``tool_request``) show them
    with the ``${NAME}`` references of the config in place of the secrets they resolved to,
    as ``node_start`` shows params; the tool gets ``value``, the real arguments."""

    __slots__ = ("refs", "value")

    def __init__(self, value: Any, refs: EnvRefs) -> None:
        self.value = value
        self.refs = refs

    def to_json(self) -> Any:
        data = to_jsonable(self.value)
        return restore_env_refs(data, self.refs) if self.refs else data

    def __repr__(self) -> str:
        return f"ToolArguments({self.to_json()!r})"


class ToolNode(AsyncNode):
    """Calls a tool (HTTP fetch, file read, CSV summary, or any registered tool)."""

    Params = ToolParams
    params: ToolParams

    @functools.cached_property
    def _tool(self) -> ToolType:
        try:
            tool: ToolType = self.plugin_registry().tool(self.params.tool)
            return tool
        except PluginError as exc:
            raise ConfigError(f"node {self.id!r}: {exc}") from None

    @functools.cached_property
    def _compiled(self) -> tuple[Bindings, dict[str, Any]]:
        budget = policy_of(self.deps).templates
        bindings = Bindings(self.inputs, node_id=self.id, budget=budget)
        available = bindings.available()
        where = f"node {self.id!r} params.arguments"
        arguments = {
            name: _compile(value, f"{where}.{name}", available, budget)
            for name, value in self.params.arguments.items()
        }
        return bindings, arguments

    def validate_config(self) -> None:
        """Load-time checks: the tool exists, templates compile, arguments known at load
        time already match the tool's params, and ``base_dir`` stays where the sandbox policy
        lets file tools read."""
        tool = self._tool
        _, arguments = self._compiled
        if tool.params is not None and not _has_template(arguments):
            self._structure(arguments, tool)
        self._base_dir(policy_of(self.deps))

    def _structure(self, arguments: dict[str, Any], tool: ToolType) -> Any:
        if tool.params is None:
            return arguments
        return structure(
            arguments,
            tool.params,
            path="$.params.arguments",
            where=f"node {self.id!r} (tool {tool.name!r})",
        )

    def _base_dir(self, policy: SandboxPolicy) -> Path:
        """Where the tool's relative paths start: ``base_dir`` below the flow's folder (the
        current directory for a flow not loaded from a file), inside the policy's files root."""
        deps = self.deps
        root = Path(deps.get(FLOW_DIR)) if deps is not None and deps.has(FLOW_DIR) else Path.cwd()
        try:
            return policy.file_base(root, self.params.base_dir, what=f"node {self.id!r}")
        except SandboxViolation as exc:
            raise ConfigError(str(exc)) from None

    async def prep_async(self, backpack: BackpackView) -> Any:
        return await off_loop(lambda: self._arguments(backpack))

    def _arguments(self, backpack: BackpackView) -> ToolArguments:
        """The call's arguments, templates rendered (in a worker thread where the policy
        says)."""
        bindings, arguments = self._compiled
        context = bindings.resolve(base_context(current_run_or_none(), backpack))
        rendered = {name: _render(value, context) for name, value in arguments.items()}
        return ToolArguments(self._structure(rendered, self._tool), self._argument_refs())

    def _argument_refs(self) -> EnvRefs:
        """Where the arguments hold ``${NAME}`` references (paths below ``arguments``)."""
        refs: EnvRefs = getattr(self, "env_refs", None) or {}
        return {path[1:]: ref for path, ref in refs.items() if path[:1] == ("arguments",)}

    async def exec_async(self, prepared: ToolArguments) -> Any:
        run = current_run()
        tool = self._tool
        run.emit(StreamEventType.TOOL_REQUEST, ToolCallPayload(tool.name, prepared))
        policy = run.policy
        context = ToolContext(base_dir=self._base_dir(policy), policy=policy)
        started = time.perf_counter()
        try:
            result = await invoke_tool(tool, prepared.value, context)
        except Exception as exc:
            message, _, _ = exception_text(exc)
            run.emit(
                StreamEventType.TOOL_RESPONSE,
                ToolResponsePayload(
                    tool.name, None, (time.perf_counter() - started) * 1e3, message
                ),
            )
            raise
        result = to_jsonable(result)
        run.emit(
            StreamEventType.TOOL_RESPONSE,
            ToolResponsePayload(tool.name, result, (time.perf_counter() - started) * 1e3),
        )
        return result

    async def post_async(self, backpack: BackpackView, arguments: Any, result: Any) -> Any:
        backpack.pack(self.params.output_key or self.id, result)
        return None


async def invoke_tool(tool: ToolType, arguments: Any, context: ToolContext) -> Any:
    """Call ``tool``: ``function(arguments)`` as the hookspec documents tools, or
    ``function(arguments, context)`` for tools that need the flow's folder; a sync tool runs
    in a worker thread."""
    call_args = (arguments, context) if _takes_context(tool.function) else (arguments,)
    if inspect.iscoroutinefunction(tool.function):
        return await tool.function(*call_args)
    return await asyncio.to_thread(tool.function, *call_args)


def _takes_context(function: Any) -> bool:
    """Whether a tool function accepts a second positional argument (the ToolContext)."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def _compile(value: Any, where: str, available: frozenset[str], budget: TemplateBudget) -> Any:
    """``value`` with every string holding template syntax compiled (nested ones too)."""
    if isinstance(value, str):
        template = Template(value, where=where, budget=budget)
        template.check_names(available)
        return value if template.is_static else template
    if isinstance(value, dict):
        return {k: _compile(v, f"{where}.{k}", available, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{where}[{i}]", available, budget) for i, v in enumerate(value)]
    return value


def _render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


def _has_template(value: Any) -> bool:
    if isinstance(value, Template):
        return True
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False
