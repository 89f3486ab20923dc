"""The HTTP service: workflows, runs, traces, live SSE streams, health and a small web page.

``create_app(settings, registry)`` builds the FastAPI app; its lifespan opens the run store
(the run-store plugin serving the database URL), migrates it, fails the runs a crash left
active, seeds the demo workflows of a new database, starts the :class:`RunManager` and, on
shutdown, lets in-flight runs finish (or cancels them) and stores every event.

Every request passes the edge first (:mod:`.edge`: Host and Origin checks, body limit, JSON
checks); every ``/api`` route names the role it needs (:mod:`.auth`); every failure a client
sees is a message and, for server-side failures, an error id (:mod:`.disclosure`).
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

import backpackflow
from backpackflow.loader import FlowLoader, flow_schema
from backpackflow.plugins import Registry, get_registry
from backpackflow_store_sql import (
    DatabaseUnavailable,
    InvalidData,
    NotFound,
    SchemaNotReady,
    VersionConflict,
)
from backpackflow_store_sql.writer import is_transient

from .apidocs import install_api_docs
from .auth import (
    SESSION_COOKIE,
    Admin,
    Authenticator,
    NotAllowed,
    NotAuthenticated,
    Runner,
    Viewer,
    require,
)
from .budgets_api import install_budgets
from .disclosure import ErrorIds, log_failure, new_error_id, with_error_id
from .edge import BodyTooLarge, flow_size_problems, install_edge
from .editor_api import install_editor_api
from .logging_json import RequestLog
from .metrics import add_metrics_route
from .models import (
    FLOW_CONFIG_REF,
    ID_PATTERN,
    CancelAccepted,
    CommitPage,
    ErrorResponse,
    Health,
    ProblemResponse,
    RunCompare,
    RunCreate,
    RunDetail,
    RunDiff,
    RunFork,
    RunResume,
    RunState,
    RunStatus,
    RunSummary,
    Session,
    SessionCreate,
    StepDetail,
    TracePage,
    Version,
    Workflow,
    WorkflowCreate,
    WorkflowSaved,
    WorkflowUpdate,
)
from .runs import UNSET, FlowProblems, RunConflict, RunManager, RunStore, ServiceUnavailable
from .seeding import read_seeds, seed_folders, seed_workflows
from .settings import Settings
from .stepdetail import COMPARE_EVENT_TYPES, compare_runs, step_detail
from .streaming import run_stream
from .timetravel import Histories, commit_page, diff_between, fork, read_masked, state_at
from .tracing import caller_trace
from .validation import flow_problems, request_problems
from .webui import install_web_ui

log = logging.getLogger("backpackflow_server")

#: The most trace events one page may hold.
MAX_TRACE_PAGE = 1000
#: seq is a 32-bit integer column.
MAX_SEQ = 2**31 - 1
#: Seconds an SSE stream gets to end cleanly when the server shuts down.
STREAM_SHUTDOWN_GRACE = 2.0
#: Seconds a client may leave a stream's data unread before it is dropped (it resumes).
STREAM_SEND_TIMEOUT = 60.0
#: The largest pages of the list endpoints.
MAX_RUNS_PAGE = 500
MAX_WORKFLOWS_PAGE = 200


@dataclass
class Service:
    """What the routes share, made by the lifespan."""

    settings: Settings
    registry: Registry
    store: RunStore
    loader: FlowLoader
    manager: RunManager
    git_sha: str | None
    authenticator: Authenticator


def open_store(registry: Registry, url: str | None) -> RunStore:
    """The store of the run-store plugin serving ``url`` (``None``: the default SQLite file)."""
    store: RunStore = registry.run_store_for_url(url).factory(url)
    return store


def git_sha() -> str | None:
    """``$BACKPACKFLOW_GIT_SHA``, else the commit of the checkout this code runs from."""
    sha = os.environ.get("BACKPACKFLOW_GIT_SHA")
    if sha:
        return sha
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def package_version() -> str:
    try:
        return metadata.version("backpackflow")
    except metadata.PackageNotFoundError:
        return backpackflow.__version__


async def _service(request: Request) -> Service:
    # async: FastAPI runs a plain ``def`` dependency in the thread pool, a thread hop per
    # request for an attribute read
    service: Service = request.app.state.service
    return service


#: What FastAPI takes as ``responses=``: extra documented responses by status code.
Responses = dict[int | str, dict[str, Any]]

ServiceDep = Annotated[Service, Depends(_service)]
VIEWER = require("viewer")
WorkflowId = Annotated[str, PathParam(pattern=ID_PATTERN, description="a workflow id")]
RunId = Annotated[str, PathParam(pattern=ID_PATTERN, description="a run id")]
# Constraints of optional parameters sit on the inner type: on the union FastAPI would drop
# them from the spec (and SkipJsonSchema keeps "null" out of it: absent means None).
IdText = Annotated[str, Field(pattern=ID_PATTERN)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
ETag = Annotated[str, Field(pattern=r'^(\*|(W/)?"?[0-9]{1,9}"?)$')]

_401: Responses = {
    401: {
        "model": ErrorResponse,
        "description": "no valid token or session (see the bearer and session security schemes)",
    }
}
_403: Responses = {
    403: {
        "model": ErrorResponse,
        "description": "the token's role does not allow this, a change made with the session "
        "cookie lacks X-CSRF-Token, or a browser origin may not change anything here",
    }
}
#: What every authenticated route may answer besides its own statuses.
_AUTH: Responses = {**_401, **_403}
_413: Responses = {
    413: {"model": ErrorResponse, "description": "the body is larger than max_body_bytes"}
}
_404: Responses = {404: {"model": ErrorResponse, "description": "no such workflow or run"}}
_422: Responses = {
    422: {
        "model": ProblemResponse,
        "description": "the request is invalid; each problem has a loc and a JSON path",
    }
}
_400: Responses = {400: {"model": ErrorResponse, "description": "the body is not JSON"}}
_503: Responses = {
    503: {"model": ErrorResponse, "description": "the database or the service is unavailable"}
}
_LINK_HEADER = {
    "Link": {
        "description": 'the next page, when there is one: <URL>; rel="next"',
        "schema": {"type": "string"},
    }
}


def _json_text(component: str) -> dict[str, Any]:
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{component}"},
    }


#: One message of a run's stream (OpenAPI before 3.2 describes each SSE event by ``schema``).
SSE_EVENT_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "description": "a trace event; id is its seq (send it back as Last-Event-ID)",
            "required": ["event", "id", "data"],
            "properties": {
                "event": {"const": "trace"},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": _json_text("TraceEvent"),
                "retry": {"type": "integer"},
            },
        },
        {
            "type": "object",
            "description": "the run is over: its summary; the stream closes",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": "end"},
                "data": _json_text("RunSummary"),
                "retry": {"type": "integer"},
            },
        },
    ]
}


def _problem_response(status: int, problems: ProblemResponse) -> JSONResponse:
    return JSONResponse(problems.model_dump(mode="json"), status_code=status)


def _error(
    status: int, detail: str, headers: dict[str, str] | None = None, error_id: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if error_id is not None:
        body["error_id"] = error_id
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Map domain errors to statuses once, instead of try/except in every route. Anything
    else is a bug: 500 with an error id, the traceback in the server log only. Call after
    :func:`install_edge` (the middleware added last is the outermost)."""

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _problem_response(422, ProblemResponse(detail=request_problems(exc.errors())))

    async def flow_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FlowProblems)
        return _problem_response(
            422, ProblemResponse(detail=flow_problems(exc.where, exc.problems))
        )

    async def invalid_data(_: Request, exc: Exception) -> JSONResponse:
        return _problem_response(
            422,
            ProblemResponse(
                detail=flow_problems("body", [f"$: {exc}"]),
            ),
        )

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def version_conflict(_: Request, exc: Exception) -> JSONResponse:
        return _error(412, str(exc))

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return _error(409, str(exc))

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "5"})

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        error_id = new_error_id()  # the message names the database: log it, don't send it
        log_failure(error_id, f"{request.method} {request.url.path}: {exc}")
        detail = with_error_id("the database is unavailable; try again later", error_id)
        return _error(503, detail, {"Retry-After": "5"}, error_id)

    async def driver_error(request: Request, exc: Exception) -> JSONResponse:
        # the driver lost the database (connection refused or cut, pool timeout, SQLite
        # locked): the same 503 as above; anything else the driver raised is a bug (500)
        if not is_transient(exc):
            raise exc
        return await database_unavailable(request, exc)

    async def not_authenticated(_: Request, exc: Exception) -> JSONResponse:
        return _error(401, str(exc), {"WWW-Authenticate": "Bearer"})

    async def not_allowed(_: Request, exc: Exception) -> JSONResponse:
        return _error(403, str(exc))

    async def body_too_large(_: Request, exc: Exception) -> JSONResponse:
        return _error(413, str(exc), {"Connection": "close"})

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(FlowProblems, flow_error)
    app.add_exception_handler(InvalidData, invalid_data)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(VersionConflict, version_conflict)
    app.add_exception_handler(RunConflict, conflict)
    app.add_exception_handler(ServiceUnavailable, unavailable)
    for database_error in (DatabaseUnavailable, SchemaNotReady):
        app.add_exception_handler(database_error, database_unavailable)
    for driver_failure in (DBAPIError, PoolTimeout):
        app.add_exception_handler(driver_failure, driver_error)
    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(NotAllowed, not_allowed)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_middleware(ErrorIds)  # anything else: 500 with an error id (outermost)


async def _check_flow(service: Service, graph_json: dict[str, Any]) -> list[str]:
    """Validate a flow document: its size here, the rest in a worker thread (the kernel's
    checks and building the flow are CPU work that must not stall the event loop)."""
    problems = flow_size_problems(graph_json, service.settings.max_flow_nodes)
    if problems:
        raise FlowProblems("graph_json", problems)
    return await service.manager.off_loop(service.manager.check_flow, graph_json)


def _next_page(
    request: Request, response: Response, items: list[dict[str, Any]], limit: int
) -> None:
    """Trim the one extra item a list asked for; if there was one, link the next page."""
    if len(items) > limit:
        del items[limit:]
        url = request.url.include_query_params(limit=limit, before=items[-1]["id"])
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'


def _expected_version(if_match: str | None) -> int | None:
    """The workflow version an ``If-Match`` header names (``None``: unconditional)."""
    if if_match is None or if_match.strip() == "*":
        return None
    return int(if_match.strip().removeprefix("W/").strip('"'))  # the header's pattern


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The service app. ``registry``: the plugins to use (default: the installed ones)."""
    settings = settings if settings is not None else Settings()
    registry = registry if registry is not None else get_registry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await run_in_threadpool(open_store, registry, settings.database_url)
        try:
            await run_in_threadpool(store.upgrade)
            loader = FlowLoader(registry)
            seeds = read_seeds(settings, registry, loader)
            await seed_workflows(store, seeds)
            manager = RunManager(store, loader, settings, seed_folders(seeds))
            log.info("flow sandbox: %s", manager.policy.describe())
            await manager.start()
            recovered = await manager.recover()  # runs the last process left active
            held = recovered.pop("held", [])
            if held:
                log.info("%d active run(s) held by live workers left to them", len(held))
            for outcome, run_ids in recovered.items():
                if run_ids:
                    log.warning("%s %d interrupted run(s): %s", outcome, len(run_ids), run_ids)
            sha = await run_in_threadpool(git_sha)
            authenticator = Authenticator(store, settings)
            app.state.service = Service(
                settings, registry, store, loader, manager, sha, authenticator
            )
            if settings.auth == "local-dev":
                log.warning("local-dev mode: no API token needed; loopback clients only")
            elif not await run_in_threadpool(store.count_active_tokens):
                log.warning(
                    "no API token exists yet, so every API request gets 401: create one with "
                    "'backpackflow tokens create --role admin' (or serve with --local-dev)"
                )
            log.info("backpackflow service ready (database %s)", store.url)
            # What exists now (~200,000 objects: modules, the app, plugins, schemas, the
            # store) lives as long as the service: frozen out of the collector's sight, a full
            # collection no longer walks it. Each one stalled the event loop for 0.15-0.2 s at
            # 50 concurrent runs, and collections took a fifth of the service's CPU
            # (bench/service_gc.py). Given back at shutdown, so that a process starting apps
            # one after another (the tests) can collect them.
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                await manager.shutdown()
        finally:
            await run_in_threadpool(store.close)

    app = FastAPI(
        title="backpackflow",
        version=package_version(),
        description=_description(settings),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: .apidocs serves /docs itself
        redoc_url=None,
    )
    install_edge(app, settings)
    _install_error_handlers(app)
    app.add_middleware(RequestLog)  # outermost: logs every request as answered
    _document_flow_schema(app, registry)
    _add_session_routes(app)
    _add_workflow_routes(app)
    _add_run_routes(app)
    _add_step_routes(app)
    _add_timetravel_routes(app)
    install_api_docs(app)  # before the page's routes: /docs is no page of the web UI
    _add_service_routes(app)
    add_metrics_route(app, settings)
    install_budgets(app)
    install_editor_api(app)
    install_web_ui(app)  # last: its page routes come after the API's
    return app


def _description(settings: Settings) -> str:
    """The spec's introduction: what the service does, who may call it, and its limits."""
    access = (
        "Local-dev mode: no token; loopback clients only."
        if settings.auth == "local-dev"
        else "Every `/api` route needs an API token (`Authorization: Bearer`, or the web "
        "page's session cookie): a viewer reads, a runner also starts and cancels runs, an "
        "admin also edits workflows. 401 without a valid one, 403 when its role does not allow "
        "the request."
    )
    return (
        "Stores workflows, runs them in the background and streams every run's trace live "
        f"(Server-Sent Events).\n\n{access} Browsers may change things only from the "
        "service's own origin (or configured ones); other Host names get 400.\n\n"
        f"Limits: request bodies up to {settings.max_body_bytes} bytes (413 beyond); JSON "
        f"nested up to {settings.max_json_depth} levels and flows of up to "
        f"{settings.max_flow_nodes} nodes (422 beyond); strings without U+0000 or lone "
        "surrogates (422). Lists are pages: `limit` and `before` (the last id of the page "
        "before); a full page links the next one in its `Link` header. Server-side failures "
        "answer with a message and an `error_id` naming the server log entry."
    )


def flow_components(registry: Registry) -> dict[str, Any]:
    """The flow JSON Schema as OpenAPI components: ``FlowConfig`` and ``FlowConfig.<def>``.

    OpenAPI 3.1 schemas are JSON Schema 2020-12, so the kernel's schema fits as it is once its
    ``$defs`` move to the components (and its ``$id`` goes: it would rebase the references).
    """
    document = flow_schema(registry)
    defs = document.pop("$defs", {})
    document.pop("$schema", None)
    document.pop("$id", None)

    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    FLOW_CONFIG_REF + "." + value.removeprefix("#/$defs/")
                    if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                    else rebase(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rebase(item) for item in node]
        return node

    components = {"FlowConfig": rebase(document)}
    components.update({f"FlowConfig.{name}": rebase(schema) for name, schema in defs.items()})
    return components


def _document_flow_schema(app: FastAPI, registry: Registry) -> None:
    """Add the flow schema of the installed node types to the generated OpenAPI spec."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = generate()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        if "FlowConfig" not in schemas:
            schemas.update(flow_components(registry))
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _add_session_routes(app: FastAPI) -> None:
    @app.post(
        "/api/session",
        response_model=Session,
        responses={**_401, **_403, **_413, **_422},
        tags=["session"],
        summary="Log the web page in with a token: sets the session cookie",
        description="The cookie is HttpOnly and SameSite=Strict and holds no token; changes "
        "made with it need the returned csrf_token in X-CSRF-Token.",
    )
    async def log_in(body: SessionCreate, service: ServiceDep, request: Request) -> JSONResponse:
        authenticator = service.authenticator
        principal = await authenticator.from_token(body.token)
        if principal is None:
            raise NotAuthenticated("the token is unknown, revoked or expired")
        cookie, csrf = authenticator.session_cookie(principal)
        secure = service.settings.session_cookie_secure
        response = JSONResponse(
            Session(
                name=principal.name,
                role=principal.role,
                via="cookie",
                csrf_token=csrf,
            ).model_dump(mode="json")
        )
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=authenticator.session_max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https" if secure is None else secure,
        )
        log.info("web session started for %s", principal.name)
        return response

    @app.get(
        "/api/session",
        response_model=Session,
        responses=_AUTH,
        tags=["session"],
        summary="Who the caller is (and the session's csrf_token)",
    )
    async def who_am_i(who: Viewer) -> Session:
        return Session(name=who.name, role=who.role, via=who.via, csrf_token=who.csrf_token)

    @app.delete(
        "/api/session",
        status_code=204,
        responses=_403,
        tags=["session"],
        summary="Log the web page out: removes the session cookie",
    )
    async def log_out() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _add_workflow_routes(app: FastAPI) -> None:
    @app.post(
        "/api/workflows",
        status_code=201,
        response_model=WorkflowSaved,
        responses={**_400, **_AUTH, **_413, **_422, **_503},
        tags=["workflows"],
        summary="Create a workflow (admin)",
    )
    async def create_workflow(
        body: WorkflowCreate, service: ServiceDep, response: Response, who: Admin
    ) -> dict[str, Any]:
        warnings = await _check_flow(service, body.graph_json)
        workflow = await run_in_threadpool(
            service.store.create_workflow, body.name, body.graph_json, body.description
        )
        response.headers["Location"] = f"/api/workflows/{workflow['id']}"
        response.headers["ETag"] = f'"{workflow["version"]}"'
        log.info("workflow %s created by %s", workflow["id"], who.name)
        return {**workflow, "warnings": warnings}

    @app.get(
        "/api/workflows",
        response_model=list[Workflow],
        responses={200: {"headers": _LINK_HEADER}, **_AUTH, **_422, **_503},
        tags=["workflows"],
        summary="List workflows, newest first, a page at a time",
        description="A full page carries a `Link` header to the next one (`before` = the "
        "last id of this page).",
        dependencies=[VIEWER],
    )
    async def list_workflows(
        service: ServiceDep,
        request: Request,
        response: Response,
        limit: Annotated[
            int,
            Query(ge=1, le=MAX_WORKFLOWS_PAGE, description="workflows in the page"),
        ] = 50,
        before: Annotated[
            IdText | SkipJsonSchema[None],
            Query(description="a workflow id: list older workflows (the next page)"),
        ] = None,
    ) -> list[dict[str, Any]]:
        items = await run_in_threadpool(
            lambda: service.store.list_workflows(limit + 1, before=before)
        )
        _next_page(request, response, items, limit)
        return items

    @app.get(
        "/api/workflows/{workflow_id}",
        response_model=Workflow,
        responses={**_AUTH, **_404, **_422, **_503},
        tags=["workflows"],
        summary="Get a workflow (its version is the ETag)",
        dependencies=[VIEWER],
    )
    async def get_workflow(
        workflow_id: WorkflowId, service: ServiceDep, response: Response
    ) -> dict[str, Any]:
        workflow = await run_in_threadpool(service.store.get_workflow, workflow_id)
        response.headers["ETag"] = f'"{workflow["version"]}"'
        return workflow

    @app.put(
        "/api/workflows/{workflow_id}",
        response_model=WorkflowSaved,
        responses={
            **_400,
            **_AUTH,
            **_404,
            **_413,
            **_422,
            **_503,
            412: {"model": ErrorResponse, "description": "If-Match names an older version"},
        },
        tags=["workflows"],
        summary="Change a workflow (admin; optionally only if still at the If-Match version)",
    )
    async def update_workflow(
        workflow_id: WorkflowId,
        body: WorkflowUpdate,
        service: ServiceDep,
        response: Response,
        who: Admin,
        if_match: Annotated[
            ETag | SkipJsonSchema[None],
            Header(description='the ETag of GET ("3"): change only if still at that version'),
        ] = None,
    ) -> dict[str, Any]:
        warnings = [] if body.graph_json is None else await _check_flow(service, body.graph_json)
        workflow = await run_in_threadpool(
            lambda: service.store.update_workflow(
                workflow_id,
                name=body.name,
                description=body.description,
                graph_json=body.graph_json,
                expected_version=_expected_version(if_match),
            )
        )
        response.headers["ETag"] = f'"{workflow["version"]}"'
        log.info("workflow %s changed by %s", workflow_id, who.name)
        return {**workflow, "warnings": warnings}

    @app.delete(
        "/api/workflows/{workflow_id}",
        status_code=204,
        responses={**_AUTH, **_404, **_422, **_503},
        tags=["workflows"],
        summary="Delete a workflow (admin; its runs and traces are kept)",
    )
    async def delete_workflow(workflow_id: WorkflowId, service: ServiceDep, who: Admin) -> Response:
        await run_in_threadpool(service.store.delete_workflow, workflow_id)
        log.info("workflow %s deleted by %s", workflow_id, who.name)
        return Response(status_code=204)


def _add_run_routes(app: FastAPI) -> None:
    @app.post(
        "/api/workflows/{workflow_id}/runs",
        status_code=202,
        response_model=RunSummary,
        responses={**_400, **_AUTH, **_404, **_413, **_422, **_503},
        tags=["runs"],
        summary="Start a run in the background (runner); returns it (queued)",
    )
    async def start_run(
        workflow_id: WorkflowId,
        service: ServiceDep,
        request: Request,
        response: Response,
        who: Runner,
        body: RunCreate | None = None,
    ) -> dict[str, Any]:
        body = body if body is not None else RunCreate()
        with caller_trace(request.headers):  # the run's spans join the caller's trace
            run = await service.manager.submit(
                workflow_id,
                body.input_vars,
                body.triggered_by or "api",
                server_address=request.scope.get("server"),  # flows may not call this address
            )
        response.headers["Location"] = f"/api/runs/{run['id']}"
        log.info("run %s of workflow %s started by %s", run["id"], workflow_id, who.name)
        return run

    @app.get(
        "/api/runs",
        response_model=list[RunSummary],
        responses={200: {"headers": _LINK_HEADER}, **_AUTH, **_422, **_503},
        tags=["runs"],
        summary="List runs, newest first, a page at a time",
        description="A full page carries a `Link` header to the next one (`before` = the "
        "last id of this page).",
        dependencies=[VIEWER],
    )
    async def list_runs(
        service: ServiceDep,
        request: Request,
        response: Response,
        workflow_id: Annotated[IdText | SkipJsonSchema[None], Query()] = None,
        status: Annotated[RunStatus | SkipJsonSchema[None], Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE, description="runs in the page")] = 50,
        before: Annotated[
            IdText | SkipJsonSchema[None],
            Query(description="a run id: list older runs (the next page)"),
        ] = None,
        forked_from: Annotated[
            IdText | SkipJsonSchema[None],
            Query(description="a run id: only the runs forked from it"),
        ] = None,
    ) -> list[dict[str, Any]]:
        items = await run_in_threadpool(
            lambda: service.store.list_runs(
                workflow_id, status, limit + 1, before=before, forked_from=forked_from
            )
        )
        _next_page(request, response, items, limit)
        return items

    @app.get(
        "/api/runs/{run_id}",
        response_model=RunDetail,
        responses={**_AUTH, **_404, **_422, **_503},
        tags=["runs"],
        summary="A run's status, totals and steps",
        dependencies=[VIEWER],
    )
    async def get_run(run_id: RunId, service: ServiceDep) -> dict[str, Any]:
        return await run_in_threadpool(service.store.get_run, run_id)

    @app.get(
        "/api/runs/{run_id}/trace",
        response_model=TracePage,
        # as stored and as streamed: parent_step only on the events of a nested step
        response_model_exclude_unset=True,
        responses={**_AUTH, **_404, **_422, **_503},
        tags=["runs"],
        dependencies=[VIEWER],
        summary="A page of a run's stored trace events, by seq",
        description="Events are stored in batches: while a run is active its newest events "
        "may not be here yet; the stream has every event at once.",
    )
    async def get_trace(
        run_id: RunId,
        service: ServiceDep,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="the last seq seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_TRACE_PAGE)] = 100,
        types: Annotated[
            list[backpackflow.StreamEventType] | SkipJsonSchema[None],
            Query(alias="type", description="only events of these types (repeat it for several)"),
        ] = None,
    ) -> dict[str, Any]:
        kinds = None if types is None else tuple(t.value for t in types)
        items = await run_in_threadpool(
            lambda: service.store.get_trace(run_id, after_seq=after, limit=limit, types=kinds)
        )
        return {
            "run_id": run_id,
            "items": items,
            "next_after": items[-1]["seq"] if items else after,
            "has_more": len(items) == limit,
        }

    @app.get(
        "/api/runs/{run_id}/stream",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `event: trace` (`id:` the seq, `data:` the "
                "event JSON) for every event after Last-Event-ID (or ?after=), comment "
                "heartbeats, and a final `event: end` with the run summary.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            },
            **_AUTH,
            **_404,
            **_422,
            **_503,
        },
        tags=["runs"],
        summary="Stream a run's trace live (resumable)",
        description="Browsers' EventSource cannot send Authorization: log the page in "
        "(POST /api/session) and the session cookie authenticates the stream.",
        dependencies=[VIEWER],
    )
    async def stream_run(
        run_id: RunId,
        service: ServiceDep,
        last_event_id: Annotated[
            Seq | SkipJsonSchema[None],
            Header(alias="Last-Event-ID", description="the last seq received: resume after it"),
        ] = None,
        after: Annotated[
            Seq | SkipJsonSchema[None], Query(description="resume after this seq")
        ] = None,
    ) -> EventSourceResponse:
        manager = service.manager
        if manager.stream_handle(run_id) is None:
            await run_in_threadpool(service.store.get_run, run_id)  # 404 if there is none
        cursor = last_event_id if last_event_id is not None else (after or 0)
        settings = service.settings
        shutdown = anyio.Event()  # set by sse-starlette when the server is told to exit
        return EventSourceResponse(
            manager.metrics.stream(  # counted as an open SSE client
                run_stream(
                    manager,
                    run_id,
                    cursor,
                    retry_ms=settings.sse_retry_ms,
                    poll_interval=settings.poll_interval,
                    shutdown=shutdown,
                )
            ),
            ping=settings.sse_heartbeat,
            send_timeout=STREAM_SEND_TIMEOUT,
            shutdown_event=shutdown,
            shutdown_grace_period=STREAM_SHUTDOWN_GRACE,
        )

    @app.post(
        "/api/runs/{run_id}/cancel",
        status_code=202,
        response_model=CancelAccepted,
        responses={
            **_AUTH,
            **_404,
            **_422,
            **_503,
            409: {"model": ErrorResponse, "description": "the run has already finished"},
        },
        tags=["runs"],
        summary="Cancel a queued or running run (runner)",
    )
    async def cancel_run(run_id: RunId, service: ServiceDep, who: Runner) -> CancelAccepted:
        status, detail = await service.manager.cancel(run_id)
        log.info("run %s: cancellation requested by %s", run_id, who.name)
        return CancelAccepted(id=run_id, status=status, detail=detail)  # type: ignore[arg-type]

    @app.post(
        "/api/runs/{run_id}/resume",
        status_code=202,
        response_model=RunSummary,
        responses={
            **_AUTH,
            **_404,
            **_422,
            **_503,
            409: {
                "model": ErrorResponse,
                "description": "the run is not paused, or cannot resume (its workflow was "
                "deleted or its flow changed since it paused)",
            },
        },
        tags=["runs"],
        summary="Answer a paused run and resume it (runner)",
        description="A run pauses when a node asks for an answer (an `approval` node, or "
        "`current_run().interrupt(prompt, schema)`): its status is `paused` and its trace "
        "holds a `custom` event named `interrupt` with the prompt and the JSON Schema the "
        "answer must match. The answer is checked against that schema (422 naming the JSON "
        "path of each problem); the run then goes on in the background: the node that asked "
        "runs again and gets the answer. Leave `answer` out only once the question's deadline "
        "has passed: the node then takes its timeout path. Answers 202 with the run as "
        "stored when accepted (`paused` until it gets a slot to run in).",
    )
    async def resume_run(
        run_id: RunId, body: RunResume, service: ServiceDep, request: Request, who: Runner
    ) -> dict[str, Any]:
        answer = body.answer if "answer" in body.model_fields_set else UNSET
        with caller_trace(request.headers):
            run = await service.manager.resume_paused(run_id, answer)
        log.info("run %s: resumed with an answer by %s", run_id, who.name)
        return run


#: The most events a step's detail carries (a longer step's first ones; page the trace on).
MAX_STEP_EVENTS = 5000
StepNumber = Annotated[int, PathParam(ge=0, le=MAX_SEQ, description="a step number of the run")]


def _read_events(
    store: RunStore,
    run_id: str,
    *,
    step: int | None = None,
    types: tuple[str, ...] | None = None,
    most: int | None = None,
) -> list[dict[str, Any]]:
    """A run's stored events (of one step, of some types), page by page; at most ``most``."""
    events: list[dict[str, Any]] = []
    after = 0
    while most is None or len(events) < most:
        page = store.get_trace(
            run_id, after_seq=after, limit=MAX_TRACE_PAGE, step=step, types=types
        )
        events.extend(page)
        if len(page) < MAX_TRACE_PAGE:
            break
        after = page[-1]["seq"]
    return events if most is None else events[: most + 1]


def _add_step_routes(app: FastAPI) -> None:
    """A step's detail and the run diff (:mod:`.stepdetail`), read from the stored trace."""

    @app.get(
        "/api/runs/{run_id}/steps/{step}",
        response_model=StepDetail,
        responses={
            **_AUTH,
            404: {"model": ErrorResponse, "description": "no such run, or no such step"},
            **_422,
            **_503,
        },
        tags=["runs"],
        summary="One step: its prompt, response, output, Backpack reads and writes, retries, "
        "fallbacks, cache hits, errors and events",
        description="Folded from the step's stored events (while a run is active its newest "
        "events may not be stored yet). Values are masked as in the trace.",
        dependencies=[VIEWER],
    )
    async def get_step(run_id: RunId, step: StepNumber, service: ServiceDep) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            run = service.store.get_run(run_id)
            row = next((s for s in run["steps"] if s["step"] == step), None)
            if row is None:
                raise NotFound("step", f"{step} of run {run_id}")
            events = _read_events(service.store, run_id, step=step, most=MAX_STEP_EVENTS)
            detail = step_detail(row, events[:MAX_STEP_EVENTS])
            detail["events_truncated"] = len(events) > MAX_STEP_EVENTS
            return detail

        return await run_in_threadpool(read)

    @app.get(
        "/api/runs/{run_id}/compare/{other_id}",
        response_model=RunCompare,
        responses={**_AUTH, **_404, **_422, **_503},
        tags=["runs"],
        summary="Two runs side by side, step by step (a run diff)",
        description="The k-th execution of a node in run_id (a) faces the k-th execution of "
        "the same node in other_id (b); each pair has the prompt, output, model, tokens, exact "
        "cost, latency and status of both sides and the fields that differ. Totals of both "
        "runs and their delta (b minus a). Typically two runs of one workflow, before and "
        "after a change (`same_workflow`).",
        dependencies=[VIEWER],
    )
    async def compare(run_id: RunId, other_id: RunId, service: ServiceDep) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            run_a, run_b = service.store.get_run(run_id), service.store.get_run(other_id)
            return compare_runs(
                run_a,
                run_b,
                lambda run: _read_events(service.store, run["id"], types=COMPARE_EVENT_TYPES),
            )

        return await run_in_threadpool(read)


#: The most commits one page of GET /api/runs/{id}/commits may hold.
MAX_COMMITS_PAGE = 5000
_NO_CHECKPOINT: Responses = {
    404: {
        "model": ErrorResponse,
        "description": "no such run, the run has no checkpoint, or it has no such commit (the "
        "message names the parameter)",
    }
}
CommitParam = Annotated[str, Field(pattern=ID_PATTERN)]


def _add_timetravel_routes(app: FastAPI) -> None:
    """Time travel (:mod:`.timetravel`): a run's commits, its Backpack at a commit, the diff
    between two commits (viewer), and forks (runner, as starting a run)."""
    histories = Histories()  # this app's recently read finished runs

    @app.get(
        "/api/runs/{run_id}/commits",
        response_model=CommitPage,
        responses={**_AUTH, **_NO_CHECKPOINT, **_422, **_503},
        tags=["time travel"],
        summary="A page of a run's Backpack commits, by seq (for a time slider)",
        description="From the run's checkpoint: each commit's id, seq, the key it wrote and "
        "how (pack, append, delete), the node that wrote it and the step it was made in. A "
        "forked run lists the source's commits up to the fork first (`inherited`).",
        dependencies=[VIEWER],
    )
    async def list_commits(
        run_id: RunId,
        service: ServiceDep,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="the last seq seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_COMMITS_PAGE)] = 1000,
    ) -> dict[str, Any]:
        return await read_masked(service.manager, histories, run_id, commit_page, after, limit)

    @app.get(
        "/api/runs/{run_id}/state",
        response_model=RunState,
        responses={**_AUTH, **_NO_CHECKPOINT, **_422, **_503},
        tags=["time travel"],
        summary="A run's Backpack at one commit (default: its last)",
        description="Every key's value and who wrote it, as right after the commit; with "
        "`history=true` also the Backpack's JSON form up to it. Secrets are masked as in the "
        "run's events.",
        dependencies=[VIEWER],
    )
    async def get_state(
        run_id: RunId,
        service: ServiceDep,
        commit: Annotated[
            CommitParam | SkipJsonSchema[None],
            Query(description="a commit id of the run (GET .../commits); absent: the last"),
        ] = None,
        history: Annotated[
            bool, Query(description="also the Backpack's JSON form (its commits up to there)")
        ] = False,
    ) -> dict[str, Any]:
        return await read_masked(service.manager, histories, run_id, state_at, commit, history)

    @app.get(
        "/api/runs/{run_id}/diff",
        response_model=RunDiff,
        responses={**_AUTH, **_NO_CHECKPOINT, **_422, **_503},
        tags=["time travel"],
        summary="What changed in a run's Backpack between two commits",
        description="Keys added (with their values), removed (with the values they had) and "
        "modified (old and new values) from `from` to `to`. Secrets are masked as in the run's "
        "events.",
        dependencies=[VIEWER],
    )
    async def get_diff(
        run_id: RunId,
        service: ServiceDep,
        from_commit: Annotated[
            CommitParam | SkipJsonSchema[None],
            Query(alias="from", description="a commit id; absent: the empty state before any"),
        ] = None,
        to_commit: Annotated[
            CommitParam | SkipJsonSchema[None],
            Query(alias="to", description="a commit id; absent: the run's last commit"),
        ] = None,
    ) -> dict[str, Any]:
        return await read_masked(
            service.manager, histories, run_id, diff_between, from_commit, to_commit
        )

    @app.post(
        "/api/runs/{run_id}/fork",
        status_code=202,
        response_model=RunSummary,
        responses={
            **_400,
            **_AUTH,
            **_NO_CHECKPOINT,
            **_413,
            **_422,
            **_503,
            409: {
                "model": ErrorResponse,
                "description": "the run's workflow was deleted, or its nodes, node types or "
                "edges changed since the run",
            },
            429: {"model": ErrorResponse, "description": "a hard budget refuses a new run"},
        },
        tags=["time travel"],
        summary="Start a new run from a commit of a run (runner); returns it (queued)",
        description="The new run starts with the Backpack as right after `commit_id`, `patch` "
        "packed on top and, if given, new `input_vars`; it goes on from the last node boundary "
        "at or before the commit, with the workflow's current version, and names its source "
        "in `forked_from`.",
    )
    async def fork_run(
        run_id: RunId,
        body: RunFork,
        service: ServiceDep,
        request: Request,
        response: Response,
        who: Runner,
    ) -> dict[str, Any]:
        with caller_trace(request.headers):
            run = await fork(
                service.manager, run_id, body, server_address=request.scope.get("server")
            )
        response.headers["Location"] = f"/api/runs/{run['id']}"
        log.info(
            "run %s forked from run %s at commit %s by %s",
            run["id"],
            run_id,
            body.commit_id,
            who.name,
        )
        return run


def _add_service_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    async def health(service: ServiceDep) -> Any:
        manager = service.manager
        pending, failed = manager.writer_stats()
        try:
            await run_in_threadpool(service.store.ping)
            database, status = "ok", "ok"
        except DatabaseUnavailable as exc:  # the message names the database: log it only
            error_id = new_error_id()
            log_failure(error_id, f"health check: {exc}")
            database, status = with_error_id("unavailable", error_id), "unavailable"
        body = Health(
            status=status,  # type: ignore[arg-type]
            database=database,
            dialect=service.store.dialect,
            active_runs=manager.active_count,
            queued_runs=manager.queued_count,
            events_pending=pending,
            events_failed=failed,
        )
        if status != "ok":
            return JSONResponse(body.model_dump(mode="json"), status_code=503)
        return body

    @app.get("/version", response_model=Version, tags=["service"])
    async def version(service: ServiceDep) -> Version:
        try:
            revision = await run_in_threadpool(service.store.current_revision)
        except Exception:  # noqa: BLE001 - /version must answer even when the database does not
            revision = None
        return Version(
            name="backpackflow",
            version=package_version(),
            git_sha=service.git_sha,
            schema_revision=revision,
        )

    @app.get(
        "/api/schema/flow",
        response_model=dict[str, Any],
        responses=_AUTH,
        tags=["workflows"],
        summary="The flow config JSON Schema, with every installed node type's params",
        dependencies=[VIEWER],
    )
    async def get_flow_schema(service: ServiceDep) -> dict[str, Any]:
        return flow_schema(service.registry)
