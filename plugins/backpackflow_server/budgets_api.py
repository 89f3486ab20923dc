"""``/api/budgets``: create, change, delete and read budgets, with the spend so far.

Reading (a budget, its period and what was spent against it) needs the viewer role, like a
run's cost; creating, changing and deleting a budget need the admin role, like editing a
workflow (a budget decides which runs the service refuses or stops). A run refused by a hard
budget gets 429 from ``POST /api/workflows/{id}/runs`` (see :mod:`.budgets`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from backpackflow_store_sql.budgets import BudgetNameTaken

from .auth import Admin, require
from .budgets import BudgetExceeded
from .models import ID_PATTERN, DecimalText, ErrorResponse, Name, ProblemResponse

log = logging.getLogger("backpackflow_server")

Period = Literal["run", "day", "month"]
Kind = Literal["soft", "hard"]
Amount = Annotated[
    str, Field(pattern=r"^[0-9]{1,30}(\.[0-9]{1,30})?$", examples=["25.00"], max_length=61)
]
Provider = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
BudgetId = Annotated[str, PathParam(pattern=ID_PATTERN, description="a budget id")]


class BudgetCreate(BaseModel):
    """A budget over the runs of ``workflow_id`` (null: every workflow) on ``provider``
    (the provider name of the llm_response events, e.g. openai; null: every provider)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    amount: Amount = Field(description="the limit, a decimal string in the pricing currency")
    period: Period = Field(description="per run, per UTC calendar day, or per UTC month")
    kind: Kind = Field(
        description="soft: alert once per period when reached; hard: refuse new runs once "
        "reached and stop a run that goes past it"
    )
    workflow_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    provider: Provider | None = None


class BudgetUpdate(BaseModel):
    """The fields to change; those left out stay as they are (null clears a scope)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    amount: Amount | None = None
    period: Period | None = None
    kind: Kind | None = None
    workflow_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    provider: Provider | None = None


class Spend(BaseModel):
    period_key: str = Field(description="2026-12 (month), 2026-12-03 (day) or run")
    period_start: datetime | None
    period_end: datetime | None
    spent: DecimalText = Field(
        description="exact spend so far: stored run totals plus what runs executing now have "
        "spent (per-run budgets: the most any executing run has spent)"
    )
    remaining: DecimalText
    reached: bool
    alerted: bool = Field(description="a soft budget's alert for this period went out")


class BudgetStatus(BaseModel):
    id: str
    name: str
    workflow_id: str | None
    provider: str | None
    period: Period
    kind: Kind
    amount: DecimalText
    currency: str
    created_at: datetime
    updated_at: datetime
    spend: Spend


_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "no valid token or session"},
    403: {"model": ErrorResponse, "description": "the token's role does not allow this"},
}
_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such budget (or workflow)"}
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "another budget has this name"}
}
_422: dict[int | str, dict[str, Any]] = {
    422: {"model": ProblemResponse, "description": "the request is invalid"}
}
VIEWER = require("viewer")


async def _service(request: Request) -> Any:
    return request.app.state.service  # async: no thread hop (see app._service)


ServiceDep = Annotated[Any, Depends(_service)]


async def _statuses(service: Any) -> dict[str, dict[str, Any]]:
    """Every budget with its spend now, by id (reads the store first: exact)."""
    guard = service.manager.budgets
    guard.apply(await run_in_threadpool(guard.refresh, list(guard.ledgers)))
    out = {}
    for item in guard.snapshot():
        budget = item["budget"]
        row = {
            "id": budget.id,
            "name": budget.name,
            "workflow_id": budget.workflow_id,
            "provider": budget.provider,
            "period": budget.period,
            "kind": budget.kind,
            "amount": format(budget.amount, "f"),
            "currency": guard.currency,
            "spend": {
                "period_key": item["period_key"],
                "period_start": item["period_start"],
                "period_end": item["period_end"],
                "spent": format(item["spend"], "f"),
                "remaining": format(item["remaining"], "f"),
                "reached": item["reached"],
                "alerted": item["alerted"],
            },
        }
        out[budget.id] = row
    return out


async def _status(service: Any, budget_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(service.store.get_budget, budget_id)  # NotFound: 404
    status = (await _statuses(service)).get(budget_id)
    assert status is not None
    return {**status, "created_at": row["created_at"], "updated_at": row["updated_at"]}


def install_budgets(app: FastAPI) -> None:
    """Add the budget routes and the answer to a run a hard budget refuses."""

    async def budget_exceeded(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BudgetExceeded)
        return JSONResponse(
            {"detail": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    async def name_taken(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    app.add_exception_handler(BudgetExceeded, budget_exceeded)
    app.add_exception_handler(BudgetNameTaken, name_taken)

    @app.get(
        "/api/budgets",
        response_model=list[BudgetStatus],
        responses={**_AUTH},
        tags=["budgets"],
        summary="List budgets with their spend so far",
        dependencies=[VIEWER],
    )
    async def list_budgets(service: ServiceDep) -> list[dict[str, Any]]:
        rows = await run_in_threadpool(service.store.list_budgets)
        statuses = await _statuses(service)
        return [
            {**statuses[r["id"]], "created_at": r["created_at"], "updated_at": r["updated_at"]}
            for r in rows
            if r["id"] in statuses
        ]

    @app.post(
        "/api/budgets",
        status_code=201,
        response_model=BudgetStatus,
        responses={**_AUTH, **_404, **_409, **_422},
        tags=["budgets"],
        summary="Create a budget (admin)",
    )
    async def create_budget(
        body: BudgetCreate, service: ServiceDep, response: Response, who: Admin
    ) -> dict[str, Any]:
        row = await run_in_threadpool(
            lambda: service.store.create_budget(
                body.name,
                amount=Decimal(body.amount),
                period=body.period,
                kind=body.kind,
                workflow_id=body.workflow_id,
                provider=body.provider,
            )
        )
        response.headers["Location"] = f"/api/budgets/{row['id']}"
        log.info("budget %s (%s) created by %s", row["id"], row["name"], who.name)
        return await _status(service, row["id"])

    @app.get(
        "/api/budgets/{budget_id}",
        response_model=BudgetStatus,
        responses={**_AUTH, **_404},
        tags=["budgets"],
        summary="A budget with its spend so far",
        dependencies=[VIEWER],
    )
    async def get_budget(budget_id: BudgetId, service: ServiceDep) -> dict[str, Any]:
        return await _status(service, budget_id)

    @app.patch(
        "/api/budgets/{budget_id}",
        response_model=BudgetStatus,
        responses={**_AUTH, **_404, **_409, **_422},
        tags=["budgets"],
        summary="Change a budget (admin)",
    )
    async def update_budget(
        budget_id: BudgetId, body: BudgetUpdate, service: ServiceDep, who: Admin
    ) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        for required in ("name", "amount", "period", "kind"):
            if required in changes and changes[required] is None:
                del changes[required]  # null means "unchanged" for fields that cannot be empty
        if "amount" in changes:
            changes["amount"] = Decimal(changes["amount"])
        await run_in_threadpool(lambda: service.store.update_budget(budget_id, **changes))
        log.info("budget %s changed by %s", budget_id, who.name)
        return await _status(service, budget_id)

    @app.delete(
        "/api/budgets/{budget_id}",
        status_code=204,
        responses={**_AUTH, **_404},
        tags=["budgets"],
        summary="Delete a budget (admin)",
    )
    async def delete_budget(budget_id: BudgetId, service: ServiceDep, who: Admin) -> Response:
        await run_in_threadpool(service.store.delete_budget, budget_id)
        guard = service.manager.budgets
        guard.apply(await run_in_threadpool(guard.refresh, list(guard.ledgers)))
        log.info("budget %s deleted by %s", budget_id, who.name)
        return Response(status_code=204)
