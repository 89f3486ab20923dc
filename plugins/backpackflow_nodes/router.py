"""The ``router`` node: evaluates a rule (CEL expression or JSON Logic, the same languages as
edge conditions) and sets ``branch``; its ``exec_complete`` event shows the rule and the value,
and edges gate on it with ``"when": "branch == 'deep'"``."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import attrs
import msgspec

from backpackflow import AsyncNode, BackpackFlowError, BackpackView
from backpackflow.loader import CompiledCondition, compile_condition
from backpackflow.policy import policy_of
from backpackflow.runner import current_run_or_none
from backpackflow_nodes.templating import Bindings, base_context, off_loop, plain_context


@attrs.frozen(kw_only=True)
class RouterParams:
    """Params of a router node: ``rule`` gives the branch (a string; ``true``/``false`` for a
    boolean rule); ``branches`` optionally lists the allowed ones; ``default`` is taken when
    the rule gives null."""

    rule: Annotated[
        str | dict[str, Any],
        msgspec.Meta(description="CEL expression or JSON Logic object giving the branch"),
    ]
    branches: list[str] | None = None
    default: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    output_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class RoutingError(BackpackFlowError):
    """The rule gave no usable branch."""


class RouterNode(AsyncNode):
    """Sets ``branch`` from a rule; edges choose the way with ``when`` conditions."""

    Params = RouterParams
    params: RouterParams

    @functools.cached_property
    def _compiled(self) -> tuple[Bindings, CompiledCondition]:
        bindings = Bindings(self.inputs, node_id=self.id, budget=policy_of(self.deps).templates)
        rule = compile_condition(
            self.params.rule, self.plugin_registry(), where=f"node {self.id!r} params.rule"
        )
        return bindings, rule

    def validate_config(self) -> None:
        self._compiled  # noqa: B018 - compiling raises ConfigError
        params = self.params
        if (
            params.branches is not None
            and params.default is not None
            and (params.default not in params.branches)
        ):
            raise RoutingError(
                f"node {self.id!r}: default {params.default!r} is not one of the branches "
                f"{params.branches}"
            )

    async def prep_async(self, backpack: BackpackView) -> dict[str, Any]:
        return await off_loop(lambda: self._context(backpack))

    def _context(self, backpack: BackpackView) -> dict[str, Any]:
        bindings, _ = self._compiled
        run = current_run_or_none()
        # plain data read now: prep_complete shows what the rule will see (not live views that
        # would be read later, after this node's own output exists), and the Backpack reads
        # happen here, so prep_complete.reads lists them
        context = plain_context(bindings.resolve(base_context(run, backpack)))
        if run is not None:  # the same names as edge conditions see
            context.setdefault("output", None)
        return context

    async def exec_async(self, context: dict[str, Any]) -> dict[str, Any]:
        _, rule = self._compiled
        try:
            value = await off_loop(lambda: rule(context))  # a rule is a flow's expression
        except Exception as exc:
            raise RoutingError(f"node {self.id!r}: rule {rule.source!r} failed: {exc}") from exc
        branch = _branch(value, self.params.default)
        if branch is None:
            raise RoutingError(
                f"node {self.id!r}: rule {rule.source!r} gave {value!r}; a rule must give a "
                "branch name (a string or a boolean), or set params.default"
            )
        allowed = self.params.branches
        if allowed is not None and branch not in allowed:
            raise RoutingError(
                f"node {self.id!r}: rule {rule.source!r} gave branch {branch!r}, which is not "
                f"one of {allowed}"
            )
        return {"branch": branch, "rule": rule.source, "value": value}

    async def post_async(self, backpack: BackpackView, context: Any, result: Any) -> Any:
        backpack.pack(self.params.output_key or self.id, result["branch"])
        return None


def _branch(value: Any, default: str | None) -> str | None:
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None
