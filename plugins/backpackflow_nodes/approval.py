"""The ``approval`` node: pauses the run until a person approves or rejects (human in the loop).

It asks with ``current_run().interrupt(prompt, schema)``: the run is ``paused`` until it is
resumed with an answer ``{"approved": true|false, "comment": "..."}`` (``backpackflow resume
RUN --answer '{"approved": true}'``, ``POST /api/runs/{id}/resume``, or
``flow.run(checkpointer=..., run_id=..., answer=...)``). The answer is packed under
``output_key`` (default: the node id) and the node returns the action ``approved``,
``rejected`` or, when ``timeout`` seconds passed without an answer, ``timeout``: each is an
edge (``{"from": "review", "to": "publish", "condition": "approved"}``)."""

from __future__ import annotations

from typing import Annotated, Any

import attrs
import msgspec

from backpackflow import BackpackView, InterruptTimeout, Node
from backpackflow.runner import current_run

#: What an approval asks for.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean", "description": "true approves, false rejects"},
        "comment": {"type": "string", "description": "why (optional)"},
    },
    "required": ["approved"],
    "additionalProperties": False,
}


@attrs.frozen(kw_only=True)
class ApprovalParams:
    """Params of an approval node."""

    prompt: Annotated[
        str, msgspec.Meta(min_length=1, description="what the person is asked to approve")
    ]
    timeout: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                description="seconds after which a resume without an answer "
                "takes the 'timeout' edge",
            ),
        ]
        | None
    ) = None
    output_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class ApprovalNode(Node):
    """Pauses the run for a yes/no decision; the actions ``approved``, ``rejected`` and
    ``timeout`` are its edges."""

    Params = ApprovalParams
    params: ApprovalParams

    def exec(self, prep_res: Any) -> dict[str, Any]:
        try:
            answer = current_run().interrupt(
                self.params.prompt, ANSWER_SCHEMA, timeout=self.params.timeout
            )
        except InterruptTimeout:
            return {"approved": None, "timed_out": True}
        return {**answer, "timed_out": False}

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> str:
        backpack.pack(self.params.output_key or self.id, exec_res)
        if exec_res["timed_out"]:
            return "timeout"
        return "approved" if exec_res["approved"] else "rejected"
