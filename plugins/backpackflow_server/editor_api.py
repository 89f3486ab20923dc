"""What the web UI's flow editor asks the service: the installed node types, the demo
templates, and a dry-run validation of a flow document.

* ``GET /api/node-types``: every node type the installed plugins register -- name,
  description, plugin, dependencies, params JSON Schema (standalone, for a form generator) and
  data contract (the Backpack keys it reads and writes, each with a JSON Schema). A third-party
  node package appears here, and so in the editor's palette, with no UI change.
* ``GET /api/templates``: the installed plugins' example flows (the demo workflows a new
  database is seeded with), to create a workflow from.
* ``GET /api/workflows/{id}/versions/{version}``: the workflow with the flow document of one
  of its versions (the store keeps each version an update replaced), so that a run's view
  draws the graph the run ran, not the workflow's current one.
* ``POST /api/flows/validate``: the checks ``POST /api/workflows`` makes (schema, graph,
  dataflow, the sandbox policy, building the flow), without storing anything: 200 with the
  warnings, or the 422 a save would answer, each problem with its JSON path into the
  document, so an editor can show them on the right node and field while the user types.

All of them only read: the viewer role suffices.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from backpackflow.config import params_schema

from .auth import require
from .edge import flow_size_problems
from .models import ID_PATTERN, ErrorResponse, FlowDocument, ProblemResponse, Workflow
from .runs import FlowProblems
from .seeding import example_seeds

VIEWER = require("viewer")
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "no valid token or session"},
    403: {"model": ErrorResponse, "description": "the token's role does not allow this"},
}

_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such workflow, or that version is not kept"}
}
WorkflowId = Annotated[str, PathParam(pattern=ID_PATTERN, description="a workflow id")]
Version = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="a version of the workflow")]


class NodeTypeInfo(BaseModel):
    name: str
    description: str
    plugin: str = Field(description="the plugin that registers it")
    dependencies: list[str] = Field(description="the dependencies a node of it needs")
    params_schema: dict[str, Any] = Field(
        description="a standalone JSON Schema (Draft 2020-12) of the node's params"
    )
    reads: dict[str, Any] = Field(
        description="its data contract: Backpack keys read, each with a JSON Schema; "
        "'{param}' in a key is filled from the node's params"
    )
    writes: dict[str, Any] = Field(description="Backpack keys written, each with a JSON Schema")


class Template(BaseModel):
    name: str
    description: str | None
    graph_json: dict[str, Any]


class FlowCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph_json: FlowDocument


class FlowCheckResult(BaseModel):
    warnings: list[str] = Field(description="what a save would accept but warn about")


async def _service(request: Request) -> Any:
    return request.app.state.service  # async: no thread hop (see app._service)


ServiceDep = Annotated[Any, Depends(_service)]


@cache
def _node_type_infos(registry: Any) -> tuple[dict[str, Any], ...]:
    """Computed once per registry: the schemas of a process's plugins do not change."""
    infos = []
    for name in sorted(registry.node_types):
        node_type = registry.node_types[name]
        infos.append(
            {
                "name": name,
                "description": node_type.description,
                "plugin": node_type.plugin,
                "dependencies": list(node_type.dependencies),
                "params_schema": params_schema(node_type.params)
                if node_type.params is not None
                else {"type": "object"},
                "reads": dict(node_type.reads),
                "writes": dict(node_type.writes),
            }
        )
    return tuple(infos)


def install_editor_api(app: FastAPI) -> None:
    @app.get(
        "/api/node-types",
        response_model=list[NodeTypeInfo],
        responses=_AUTH,
        tags=["workflows"],
        summary="The installed node types: params JSON Schema and data contract of each",
        dependencies=[VIEWER],
    )
    async def list_node_types(service: ServiceDep) -> list[dict[str, Any]]:
        return list(_node_type_infos(service.registry))

    @app.get(
        "/api/templates",
        response_model=list[Template],
        responses=_AUTH,
        tags=["workflows"],
        summary="The installed plugins' example flows, to create a workflow from",
        dependencies=[VIEWER],
    )
    async def list_templates(service: ServiceDep) -> list[dict[str, Any]]:
        seeds = await run_in_threadpool(example_seeds, service.registry, service.loader)
        return [
            {"name": s["name"], "description": s["description"], "graph_json": s["graph_json"]}
            for s in seeds
        ]

    @app.get(
        "/api/workflows/{workflow_id}/versions/{version}",
        response_model=Workflow,
        responses={**_AUTH, **_404},
        tags=["workflows"],
        summary="A workflow as it was at one of its versions (the graph a run ran)",
        dependencies=[VIEWER],
    )
    async def get_workflow_version(
        workflow_id: WorkflowId, version: Version, service: ServiceDep
    ) -> dict[str, Any]:
        # NotFound (the workflow, or a version replaced before versions were kept): the 404
        return await run_in_threadpool(service.store.get_workflow_version, workflow_id, version)

    @app.post(
        "/api/flows/validate",
        response_model=FlowCheckResult,
        responses={
            **_AUTH,
            422: {
                "model": ProblemResponse,
                "description": "what a save would refuse, each problem with a JSON path "
                "into graph_json",
            },
        },
        tags=["workflows"],
        summary="Check a flow document as a save would, storing nothing",
        dependencies=[VIEWER],
    )
    async def validate_flow(body: FlowCheck, service: ServiceDep) -> FlowCheckResult:
        problems = flow_size_problems(body.graph_json, service.settings.max_flow_nodes)
        if problems:
            raise FlowProblems("graph_json", problems)
        # FlowProblems: the service's 422, each problem with its JSON path (as a save's)
        warnings = await service.manager.off_loop(service.manager.check_flow, body.graph_json)
        return FlowCheckResult(warnings=warnings)
