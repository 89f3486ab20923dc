"""The ``agent`` node: a model and its tools in a loop (ReAct), until the model answers.

Each turn is one traced, priced model call (everything the ``llm`` node does: cache, retries,
fallbacks, ``llm_request`` / ``llm_response``, and a ``tool_call`` event per call the model
asks for). The calls of one turn run concurrently, each traced as ``tool_request`` /
``tool_response`` events carrying the model's ``call_id``; their results go back to the model
as ``tool`` messages. A tool that fails, or arguments that do not fit its parameter class, are
told to the model as the result (``{"error": ...}``) so it can correct itself, as with a real
API. The run's limits (``max_tokens``, ``max_cost``, ``timeout``) are checked after every model
call, so a runaway agent stops on the turn that crosses them; ``max_turns`` bounds the loop (a
``guardrail`` event, then an :class:`AgentError`).

Each tool call is a nested step of the agent's step (:meth:`Run.nested_step`): a step number of
its own and ``parent_step`` naming the agent's, so traces, ``inspect``, the run store and the
service list tool calls under the agent, each with its arguments, result, latency and status;
the calls of one turn are siblings.

Each turn is committed to the conversation in the Backpack (``conversation_key``, default
``<node id>.conversation``) as it ends, with ``append``: one commit per turn holding only that
turn's messages (the prompt, on the first), so a long conversation costs what was appended, the
run's history shows each turn, and a run that fails mid-way keeps the turns it made. The output
(``output_key``) is the final answer (parsed when JSON is asked for); a refusal is the action
``refused`` with ``{"refusal": ...}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Annotated, Any

import attrs
import msgspec

from backpackflow import BackpackFlowError, BackpackView, ConfigError, current_run
from backpackflow.config import structure
from backpackflow.events import (
    GuardrailPayload,
    StreamEventType,
    ToolCallPayload,
    ToolResponsePayload,
    exception_text,
)
from backpackflow.jsondata import to_jsonable
from backpackflow.loader import FLOW_DIR
from backpackflow.plugins import ToolType
from backpackflow.policy import SandboxViolation
from backpackflow.runner import Run, current_run_or_none
from backpackflow_llm import LLMRequest, Message, ToolCall
from backpackflow_nodes.llm import REFUSED, LLMNode, LLMParams
from backpackflow_nodes.tool import invoke_tool
from backpackflow_nodes.tools import ToolContext


@attrs.frozen(kw_only=True)
class AgentParams(LLMParams):
    """Params of an agent node: those of an llm node (``tools`` names the tools it may call),
    plus the loop's bound and where the conversation is kept."""

    max_turns: Annotated[
        int, msgspec.Meta(ge=1, le=100, description="model calls before the agent gives up")
    ] = 8
    conversation_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    base_dir: (
        Annotated[
            str, msgspec.Meta(description="where file tools read, relative to the flow's folder")
        ]
        | None
    ) = None


class AgentError(BackpackFlowError):
    """The agent did not answer within ``max_turns`` model calls."""


class AgentNode(LLMNode):
    """Calls a model with tools in a loop until it answers: traced, priced, bounded."""

    Params = AgentParams
    params: AgentParams

    def validate_config(self) -> None:
        super().validate_config()
        if not self.params.tools:
            raise ConfigError(
                f"node {self.id!r}: an agent needs params.tools (registered tool names); "
                "without tools use an llm node"
            )
        self._base_dir()

    @functools.cached_property
    def _tools(self) -> dict[str, ToolType]:
        registry = self.plugin_registry()
        return {name: registry.tool(name) for name in self.params.tools}

    def _base_dir(self) -> Path:
        deps = self.deps
        root = Path(deps.get(FLOW_DIR)) if deps is not None and deps.has(FLOW_DIR) else Path.cwd()
        run = current_run_or_none()
        policy = run.policy if run is not None else None
        if policy is None:
            from backpackflow.policy import policy_of

            policy = policy_of(self.deps)
        try:
            return policy.file_base(root, self.params.base_dir, what=f"node {self.id!r}")
        except SandboxViolation as exc:
            raise ConfigError(str(exc)) from None

    @property
    def conversation_key(self) -> str:
        return self.params.conversation_key or f"{self.id}.conversation"

    async def prep_async(self, backpack: BackpackView) -> LLMRequest:
        # the view commits each turn during exec (the node object is this execution's own)
        self._backpack = backpack
        return await super().prep_async(backpack)

    async def exec_async(self, request: LLMRequest) -> Any:
        run = current_run()
        messages = list(request.messages)
        turns: list[Message] = []
        for turn in range(1, self.params.max_turns + 1):
            response = await self.call_model(attrs.evolve(request, messages=tuple(messages)))
            said = Message("assistant", response.text, tool_calls=response.tool_calls)
            # what this turn adds to the conversation: one commit per turn (the prompt too,
            # on the first), so a run's history shows each turn and a failure keeps them
            added = [*request.messages[-1:], said] if turn == 1 else [said]
            messages.append(said)
            turns.append(said)
            try:
                run.check_limits()  # the run's budgets, per turn (a guardrail event, then an error)
            except BaseException:
                self._commit(added)
                raise
            if response.refusal is not None:
                self._commit(added)
                return self._ending(request, turns, turn, refusal=response.refusal)
            if not response.tool_calls:
                self._commit(added)
                return self._ending(request, turns, turn, answer=response.text)
            results = await asyncio.gather(
                *(self._call(call, turn) for call in response.tool_calls)
            )
            for call, result in zip(response.tool_calls, results, strict=True):
                told = Message("tool", result, tool_call_id=call.id)
                messages.append(told)
                turns.append(told)
                added.append(told)
            self._commit(added)
        limit = self.params.max_turns
        message = (
            f"node {self.id!r}: the model did not answer within max_turns={limit} model calls "
            "(it kept calling tools); raise params.max_turns or narrow the task"
        )
        run.emit(StreamEventType.GUARDRAIL, GuardrailPayload("max_turns", limit, limit, message))
        raise AgentError(message)

    def _commit(self, messages: list[Message]) -> None:
        """Append one turn's messages to the conversation: one ``append`` commit holding only
        them."""
        self._backpack.append(self.conversation_key, [m.to_json() for m in messages])

    def _ending(
        self,
        request: LLMRequest,
        turns: list[Message],
        count: int,
        *,
        answer: str | None = None,
        refusal: str | None = None,
    ) -> dict[str, Any]:
        ending: dict[str, Any] = {
            "turns": count,
            "conversation": [m.to_json() for m in [*request.messages[-1:], *turns]],
        }
        if refusal is not None:
            ending["refusal"] = refusal
        else:
            ending["answer"] = answer
        return ending

    async def _call(self, call: ToolCall, turn: int) -> str:
        """One tool call of the model, a nested step of the agent's step (its own step number,
        ``parent_step`` the agent's; the calls of one turn are siblings): ``tool_request`` with
        the arguments opens it, ``tool_response`` with the result or error and the latency
        closes it. Returns the result (or error) as the text the model reads."""
        run = current_run()
        with run.nested_step(call.name):
            return await self._call_in_step(run, call, turn)

    async def _call_in_step(self, run: Run, call: ToolCall, turn: int) -> str:
        run.emit(
            StreamEventType.TOOL_REQUEST, ToolCallPayload(call.name, dict(call.arguments), call.id)
        )
        started = time.perf_counter()
        tool = self._tools.get(call.name)
        try:
            if tool is None:
                raise ConfigError(
                    f"the model called {call.name!r}, which is not in params.tools "
                    f"{self.params.tools}"
                )
            arguments = (
                structure(
                    dict(call.arguments),
                    tool.params,
                    path="$.arguments",
                    where=f"node {self.id!r} (tool {call.name!r}, turn {turn})",
                )
                if tool.params is not None
                else dict(call.arguments)
            )
            context = ToolContext(base_dir=self._base_dir(), policy=run.policy)
            result = to_jsonable(await invoke_tool(tool, arguments, context))
        except Exception as exc:  # noqa: BLE001 - the model is told, as an API would tell it
            error, _, _ = exception_text(exc)
            elapsed = (time.perf_counter() - started) * 1e3
            run.emit(
                StreamEventType.TOOL_RESPONSE,
                ToolResponsePayload(call.name, None, elapsed, error, call.id),
            )
            return json.dumps({"error": error}, ensure_ascii=False)
        elapsed = (time.perf_counter() - started) * 1e3
        run.emit(
            StreamEventType.TOOL_RESPONSE,
            ToolResponsePayload(call.name, result, elapsed, None, call.id),
        )
        return json.dumps(result, ensure_ascii=False, default=str)

    async def post_async(self, backpack: BackpackView, request: LLMRequest, ending: Any) -> Any:
        action = None
        if "refusal" in ending:
            output: Any = {"refusal": ending["refusal"]}
            action = REFUSED
        else:
            output = self.parse_output(ending["answer"], request)
        run = current_run_or_none()
        if run is not None:
            run.outputs[self.id] = output
        backpack.pack(self.params.output_key or self.id, output)
        return action
