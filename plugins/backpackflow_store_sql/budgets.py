"""The store's budgets: their rows, and the spend of stored runs within a budget's scope.

A mixin of :class:`~backpackflow_store_sql.SqlRunStore` (it uses the store's sessions), kept
apart because budgets are one concern of their own. The service's
:mod:`backpackflow_server.budgets` enforces them; this module only stores and sums.

Spend is the exact sum of stored totals: a run's ``total_cost`` (every provider), or its
``run_costs`` row of one provider. The sum is made in Python with :class:`~decimal.Decimal`
because SQLite keeps money as text (its ``SUM`` would go through floats); a period is a UTC
calendar day or month, and a run belongs to the period it was created in.
"""

from __future__ import annotations

import decimal
from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .errors import InvalidData, NotFound
from .models import BUDGET_KINDS, BUDGET_PERIODS, Budget, RunCost, Workflow, WorkflowRun


class BudgetNameTaken(InvalidData):
    """Another budget has this name (the service answers 409)."""


_MONEY = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])
_FIELDS = ("name", "workflow_id", "provider", "period", "kind", "amount")


def budget_dict(b: Budget) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "workflow_id": b.workflow_id,
        "provider": b.provider,
        "period": b.period,
        "kind": b.kind,
        "amount": format(b.amount, "f"),
        "alerted_period": b.alerted_period,
        "created_at": b.created_at.isoformat(),
        "updated_at": b.updated_at.isoformat(),
    }


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidData(f'amount must be a decimal string like "25.00", not {value!r}')
    try:
        amount = Decimal(value)
    except decimal.InvalidOperation:
        raise InvalidData(f"amount {value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0 or len(amount.as_tuple().digits) > 40:
        raise InvalidData(f"amount {value!r} must be a finite decimal >= 0 (at most 40 digits)")
    return amount


def _check(fields: dict[str, Any]) -> dict[str, Any]:
    name = fields.get("name")
    if "name" in fields and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise InvalidData(f"a budget needs a name of 1-200 characters, not {name!r}")
    if "period" in fields and fields["period"] not in BUDGET_PERIODS:
        raise InvalidData(f"period {fields['period']!r} is not one of {', '.join(BUDGET_PERIODS)}")
    if "kind" in fields and fields["kind"] not in BUDGET_KINDS:
        raise InvalidData(f"kind {fields['kind']!r} is not one of {', '.join(BUDGET_KINDS)}")
    provider = fields.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise InvalidData(f"provider must be a provider name or null, not {provider!r}")
    if "amount" in fields:
        fields["amount"] = _amount(fields["amount"])
    return fields


class BudgetStore:
    """Budget rows and spend sums (mixed into the SQL run store)."""

    def _read(self) -> AbstractContextManager[Session]:  # provided by the store
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:  # provided by the store
        raise NotImplementedError

    def _new_id(self) -> str:  # provided by the store: its ids, time-ordered
        raise NotImplementedError

    @staticmethod
    def _get_budget(session: Session, budget_id: str) -> Budget:
        budget = session.get(Budget, budget_id)
        if budget is None:
            raise NotFound("budget", budget_id)
        return budget

    @staticmethod
    def _unique_name(session: Session, name: str, budget_id: str | None = None) -> None:
        found = session.scalars(select(Budget.id).where(Budget.name == name)).first()
        if found is not None and found != budget_id:
            raise BudgetNameTaken(f"a budget named {name!r} exists; pick another name")

    @staticmethod
    def _known_workflow(session: Session, workflow_id: str | None) -> None:
        if workflow_id is not None and session.get(Workflow, workflow_id) is None:
            raise NotFound("workflow", workflow_id)

    def create_budget(
        self,
        name: str,
        *,
        amount: Decimal | str | int,
        period: str,
        kind: str,
        workflow_id: str | None = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        """A new budget over ``workflow_id``'s runs (``None``: every run) and ``provider``'s
        calls (``None``: every provider)."""
        fields = _check(
            {
                "name": name,
                "amount": amount,
                "period": period,
                "kind": kind,
                "workflow_id": workflow_id,
                "provider": provider,
            }
        )
        now = datetime.now(UTC)
        with self._write() as session:
            self._unique_name(session, name)
            self._known_workflow(session, workflow_id)
            budget = Budget(id=self._new_id(), created_at=now, updated_at=now, **fields)
            session.add(budget)
            session.flush()
            return budget_dict(budget)

    def list_budgets(self) -> list[dict[str, Any]]:
        with self._read() as session:
            return [budget_dict(b) for b in session.scalars(select(Budget).order_by(Budget.id))]

    def get_budget(self, budget_id: str) -> dict[str, Any]:
        with self._read() as session:
            return budget_dict(self._get_budget(session, budget_id))

    def update_budget(self, budget_id: str, **changes: Any) -> dict[str, Any]:
        """Change some of a budget's fields (those of :func:`create_budget`). A change of
        scope, period or amount makes its soft alert due again."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise InvalidData(f"unknown budget fields {sorted(unknown)}; allowed: {_FIELDS}")
        fields = _check(dict(changes))
        with self._write() as session:
            budget = self._get_budget(session, budget_id)
            if "name" in fields:
                self._unique_name(session, fields["name"], budget_id)
            if "workflow_id" in fields:
                self._known_workflow(session, fields["workflow_id"])
            for key, value in fields.items():
                setattr(budget, key, value)
            if set(fields) - {"name", "kind"}:
                budget.alerted_period = None
            budget.updated_at = datetime.now(UTC)
            session.flush()
            return budget_dict(budget)

    def delete_budget(self, budget_id: str) -> None:
        with self._write() as session:
            session.delete(self._get_budget(session, budget_id))

    def claim_budget_alert(self, budget_id: str, period_key: str) -> bool:
        """Mark the soft alert of ``period_key`` sent; ``False`` if it already was (by this
        or another service process), so an alert goes out once."""
        with self._write() as session:
            result = session.execute(
                update(Budget)
                .where(
                    Budget.id == budget_id,
                    (Budget.alerted_period.is_(None)) | (Budget.alerted_period != period_key),
                )
                .values(alerted_period=period_key)
            )
            return bool(getattr(result, "rowcount", 0))

    def budget_spend(
        self,
        *,
        start: datetime,
        end: datetime,
        workflow_id: str | None = None,
        provider: str | None = None,
        exclude: Collection[str] = (),
    ) -> Decimal:
        """The exact stored spend of the runs created in ``[start, end)`` (of ``workflow_id``,
        on ``provider``; ``None``: all), leaving out the runs ``exclude`` names."""
        with self._read() as session:
            if provider is None:
                query = select(WorkflowRun.id, WorkflowRun.total_cost)
            else:
                query = (
                    select(WorkflowRun.id, RunCost.cost)
                    .join(RunCost, RunCost.run_id == WorkflowRun.id)
                    .where(RunCost.provider == provider)
                )
            query = query.where(WorkflowRun.created_at >= start, WorkflowRun.created_at < end)
            if workflow_id is not None:
                query = query.where(WorkflowRun.workflow_id == workflow_id)
            total = Decimal(0)
            skip = set(exclude)
            for run_id, cost in session.execute(query):
                if run_id not in skip:
                    total = _MONEY.add(total, cost)
            return total

    def run_costs(self, run_id: str) -> dict[str, Decimal]:
        """A stored run's cost per provider."""
        with self._read() as session:
            rows = session.execute(
                select(RunCost.provider, RunCost.cost).where(RunCost.run_id == run_id)
            )
            return {provider: cost for provider, cost in rows}
