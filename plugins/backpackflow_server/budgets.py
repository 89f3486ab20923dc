"""Cost controls of the service: budgets per workflow and per provider, per run, day or month.

A budget (stored by the run store, changed through ``/api/budgets``) limits the spend of the
runs of one workflow (or of every run) on one LLM provider (or on all), per run or per UTC
calendar day or month. A **soft** budget alerts once per period when its spend reaches the
amount: a ``custom`` event named ``budget_alert`` in the run that reached it (so the flow's own
sinks see it) and, when the operator set ``budget_webhook_url``, a POST through the webhook
sink. A **hard** budget refuses new runs once the period's spend has reached the amount (HTTP
429 naming the budget, ``Retry-After`` the start of the next period) and stops a running run
whose spend goes past it: a ``guardrail`` event naming the budget, then the run is canceled
with that reason.

How spend is known without a database read on the hot path: at a run's admission (at most
every ``budget_refresh_seconds``, and whenever a budget changes) the guard reads the budgets
and, for each period budget, the exact stored spend of the period's runs
(:meth:`SqlRunStore.budget_spend`), leaving out the runs this process is executing. Those
runs' costs are counted live, from their ``llm_response`` events (the same numbers the store
adds up), and move to the stored part when they finish. So the spend a check sees is stored
spend + live spend, exact to the last digit; runs of *another* service process are counted
once they are stored and read (within ``budget_refresh_seconds``). ``snapshot()`` gives the
spend of every budget now: what ``GET /api/budgets`` shows and what a metrics exporter reads.
"""

from __future__ import annotations

import decimal
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import attrs

from backpackflow import BackpackEvent, Run, StreamEventType, current_run

log = logging.getLogger("backpackflow_server.budgets")

_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])
_ZERO = Decimal(0)
#: Finished runs remembered so an admission's stored-spend read can be squared with them.
_CLOSED_KEPT = 10_000


def period_bounds(period: str, when: datetime) -> tuple[str, datetime, datetime]:
    """(key, start, end) of the UTC calendar ``period`` ("day" or "month") holding ``when``."""
    when = when.astimezone(UTC)
    if period == "day":
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start, start + timedelta(days=1)
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), start, end


@attrs.frozen
class Budget:
    """A budget as the guard uses it (from the store's row)."""

    id: str
    name: str
    workflow_id: str | None
    provider: str | None
    period: str
    kind: str
    amount: Decimal
    alerted_period: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Budget:
        return cls(
            id=row["id"],
            name=row["name"],
            workflow_id=row["workflow_id"],
            provider=row["provider"],
            period=row["period"],
            kind=row["kind"],
            amount=Decimal(row["amount"]),
            alerted_period=row.get("alerted_period"),
        )

    def applies_to(self, workflow_id: str | None) -> bool:
        return self.workflow_id is None or self.workflow_id == workflow_id

    def describe(self) -> str:
        scope = [f"workflow {self.workflow_id}" if self.workflow_id else "every workflow"]
        scope.append(f"provider {self.provider}" if self.provider else "every provider")
        per = {"run": "per run", "day": "per UTC day", "month": "per UTC month"}[self.period]
        return f"{self.kind} budget {self.name!r} ({', '.join(scope)}, {per})"


class BudgetExceeded(Exception):
    """A hard budget refuses a new run: HTTP 429 with the message, ``Retry-After`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetGuardrail(NamedTuple):
    """The payload of the ``guardrail`` event that stops a run over a hard budget (the
    kernel's guardrail fields, then the budget's)."""

    limit: str
    value: str
    maximum: str
    message: str
    budget_id: str
    budget: str
    period: str
    period_key: str


@attrs.define
class Ledger:
    """What one run executing here has spent so far, per provider (live, from its events)."""

    run_id: str
    workflow_id: str | None
    created_at: datetime
    costs: dict[str, Decimal] = attrs.Factory(dict)
    run: Run | None = None
    stopped: bool = False
    alerted: set[str] = attrs.Factory(set)

    def cost(self, provider: str | None = None) -> Decimal:
        if provider is not None:
            return self.costs.get(provider, _ZERO)
        total = _ZERO
        for amount in self.costs.values():
            total = _EXACT.add(total, amount)
        return total


def flow_providers(graph_json: Mapping[str, Any]) -> set[str]:
    """The LLM providers a flow document names (nodes' ``provider`` and fallbacks, resolved
    through its ``dependencies`` to their factory type): the provider budgets that can refuse
    it before it runs. Providers that a node picks at run time are caught while it runs."""
    dependencies = graph_json.get("dependencies")
    dependencies = dependencies if isinstance(dependencies, Mapping) else {}
    names: set[str] = set()
    for node in graph_json.get("nodes") or ():
        params = node.get("params") if isinstance(node, Mapping) else None
        if not isinstance(params, Mapping):
            continue
        chosen = [params.get("provider")]
        for fallback in params.get("fallbacks") or ():
            if isinstance(fallback, Mapping):
                chosen.append(fallback.get("provider"))
        for name in chosen:
            if not isinstance(name, str):
                continue
            declared = dependencies.get(name)
            kind = declared.get("type") if isinstance(declared, Mapping) else None
            names.add(kind if isinstance(kind, str) else name)
    return names


class BudgetGuard:
    """Admits, watches and accounts runs against the budgets (one per service process).

    Everything but :meth:`refresh` and :meth:`claim_and_send` runs on the event loop's
    thread; those two read or write the store and run in the thread pool."""

    def __init__(
        self,
        store: Any,
        *,
        alert_sink: Any = None,
        currency: str = "USD",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.alert_sink = alert_sink
        self.currency = currency
        self.now = now
        self.budgets: list[Budget] = []
        #: (budget id, period key) -> stored spend of the period's runs not executing here.
        self.stored: dict[tuple[str, str], Decimal] = {}
        self.alerted: set[tuple[str, str]] = set()
        #: Alerts made here whose claim in the store is still being written.
        self.claiming: set[tuple[str, str]] = set()
        self.ledgers: dict[str, Ledger] = {}
        self.closed: OrderedDict[str, Ledger] = OrderedDict()
        #: Counts since start, for metrics: alerts sent, runs refused, runs stopped.
        self.counts = {"alerts": 0, "refused": 0, "stopped": 0}
        #: Called with (budget, spend, period key) on each alert (a metrics hook).
        self.alert_listeners: list[Callable[[Budget, Decimal, str], None]] = []
        self.schedule: Callable[[Callable[[], Any]], None] = lambda work: None
        self.refreshed_at = -float("inf")  # time.monotonic() of the last apply()

    def stale(self, seconds: float) -> bool:
        """Whether the last read of the store is older than ``seconds``."""
        return time.monotonic() - self.refreshed_at >= seconds

    # ------------------------------------------------------------------ reading the store

    def refresh(self, executing: Iterable[str]) -> dict[str, Any]:
        """Read the budgets and the stored spend of each period budget's current period,
        leaving out the runs ``executing`` here (thread pool). Apply with :meth:`apply`."""
        when = self.now()
        budgets = [Budget.from_row(row) for row in self.store.list_budgets()]
        excluded = frozenset(executing)
        stored: dict[tuple[str, str], Decimal] = {}
        for budget in budgets:
            if budget.period == "run":
                continue
            key, start, end = period_bounds(budget.period, when)
            stored[budget.id, key] = self.store.budget_spend(
                start=start,
                end=end,
                workflow_id=budget.workflow_id,
                provider=budget.provider,
                exclude=excluded,
            )
        return {"budgets": budgets, "stored": stored, "excluded": excluded}

    def apply(self, refreshed: Mapping[str, Any]) -> None:
        """Take a :meth:`refresh` result (on the loop). Runs it left out that have finished
        since are added back: their costs are in the store now, but not in what was read."""
        self.refreshed_at = time.monotonic()
        self.budgets = list(refreshed["budgets"])
        stored = dict(refreshed["stored"])
        by_id = {b.id: b for b in self.budgets}
        for (budget_id, key), amount in stored.items():
            budget = by_id[budget_id]
            for run_id in refreshed["excluded"]:
                ledger = self.closed.get(run_id)
                if ledger is not None and self._counts_in(budget, ledger, key):
                    amount = _EXACT.add(amount, ledger.cost(budget.provider))
            stored[budget_id, key] = amount
        self.stored = stored
        # what the store says was alerted: a budget whose amount, scope or period changed
        # since may alert again (the store cleared its period)
        self.alerted = {
            (b.id, b.alerted_period) for b in self.budgets if b.alerted_period is not None
        } | {(b, k) for b, k in list(self.claiming) if b in by_id}

    # ------------------------------------------------------------------ spend

    @staticmethod
    def _counts_in(budget: Budget, ledger: Ledger, key: str) -> bool:
        return (
            budget.applies_to(ledger.workflow_id)
            and period_bounds(budget.period, ledger.created_at)[0] == key
        )

    def spend(self, budget: Budget, key: str, ledger: Ledger | None = None) -> Decimal:
        """The budget's spend in period ``key`` (a run's: ``ledger``'s alone)."""
        if budget.period == "run":
            return ledger.cost(budget.provider) if ledger is not None else _ZERO
        total = self.stored.get((budget.id, key), _ZERO)
        for active in list(self.ledgers.values()):  # a copy: a scrape may read from a thread
            if self._counts_in(budget, active, key):
                total = _EXACT.add(total, active.cost(budget.provider))
        return total

    def snapshot(self) -> list[dict[str, Any]]:
        """Every budget with its current period and spend so far (the API's and metrics'
        view; per-run budgets show the largest spend among the runs executing here)."""
        when = self.now()
        out = []
        for budget in self.budgets:
            if budget.period == "run":
                key = "run"
                spend = max(
                    (
                        ledger.cost(budget.provider)
                        for ledger in list(self.ledgers.values())
                        if budget.applies_to(ledger.workflow_id)
                    ),
                    default=_ZERO,
                )
                start = end = None
            else:
                key, start, end = period_bounds(budget.period, when)
                spend = self.spend(budget, key)
            out.append(
                {
                    "budget": budget,
                    "period_key": key,
                    "period_start": start,
                    "period_end": end,
                    "spend": spend,
                    "remaining": max(budget.amount - spend, _ZERO),
                    "reached": spend >= budget.amount,
                    "alerted": (budget.id, key) in self.alerted,
                }
            )
        return out

    # ------------------------------------------------------------------ admission

    def admit(self, workflow_id: str, graph_json: Mapping[str, Any]) -> None:
        """Raise :class:`BudgetExceeded` when a hard period budget over this workflow (and a
        provider its flow names) has no money left."""
        when = self.now()
        providers = flow_providers(graph_json)
        for budget in self.budgets:
            if budget.kind != "hard" or budget.period == "run":
                continue
            if not budget.applies_to(workflow_id):
                continue
            if budget.provider is not None and budget.provider not in providers:
                continue
            key, _, end = period_bounds(budget.period, when)
            spend = self.spend(budget, key)
            if spend >= budget.amount:
                self.counts["refused"] += 1
                retry = max(1, int((end - when).total_seconds()) + 1)
                raise BudgetExceeded(
                    f"{budget.describe()} is used up: {spend} of {budget.amount} "
                    f"{self.currency} spent in {key}; no new runs until {end.isoformat()} "
                    f"(or raise the budget: PATCH /api/budgets/{budget.id})",
                    retry,
                )

    # ------------------------------------------------------------------ watching runs

    def open(self, run_id: str, workflow_id: str | None, created_at: datetime) -> Ledger:
        ledger = Ledger(run_id, workflow_id, created_at)
        self.ledgers[run_id] = ledger
        return ledger

    def close(self, run_id: str) -> None:
        """The run's costs are stored: move them from live to stored spend."""
        ledger = self.ledgers.pop(run_id, None)
        if ledger is None:
            return
        for (budget_id, key), amount in list(self.stored.items()):
            budget = next((b for b in self.budgets if b.id == budget_id), None)
            if budget is not None and self._counts_in(budget, ledger, key):
                self.stored[budget_id, key] = _EXACT.add(amount, ledger.cost(budget.provider))
        ledger.run = None
        self.closed[run_id] = ledger
        while len(self.closed) > _CLOSED_KEPT:
            self.closed.popitem(last=False)

    def watcher(
        self, ledger: Ledger, stop: Callable[[str], None]
    ) -> Callable[[BackpackEvent], None]:
        """The run's subscriber (subscribe it last, so that every other subscriber has an
        event before one this emits in answer): counts ``llm_response`` costs and enforces
        the budgets; ``stop(reason)`` cancels the run."""

        def on_event(event: BackpackEvent) -> None:
            if ledger.run is None:
                run = _this_run(ledger.run_id)
                if run is not None:
                    ledger.run = run
            if event.type != StreamEventType.LLM_RESPONSE:
                return
            payload = event.payload
            provider = _field(payload, "provider")
            provider = provider if isinstance(provider, str) and provider else "unknown"
            try:
                cost = Decimal(str(_field(payload, "cost") or 0))
            except decimal.InvalidOperation:
                return  # the store does not count it either
            if not cost.is_finite():
                return
            ledger.costs[provider] = _EXACT.add(ledger.costs.get(provider, _ZERO), cost)
            self._enforce(ledger, provider, stop)

        return on_event

    def _enforce(self, ledger: Ledger, provider: str, stop: Callable[[str], None]) -> None:
        for budget in self.budgets:  # as they are now: a budget made during a run counts
            if not budget.applies_to(ledger.workflow_id):
                continue
            if budget.provider is not None and budget.provider != provider:
                continue
            if budget.period == "run":
                key = ledger.run_id
            else:
                key = period_bounds(budget.period, ledger.created_at)[0]
            spend = self.spend(budget, key, ledger)
            if budget.kind == "hard" and spend > budget.amount and not ledger.stopped:
                self._stop(ledger, budget, key, spend, stop)
            elif budget.kind == "soft" and spend >= budget.amount:
                self._alert(ledger, budget, key, spend)

    def _stop(
        self,
        ledger: Ledger,
        budget: Budget,
        key: str,
        spend: Decimal,
        stop: Callable[[str], None],
    ) -> None:
        ledger.stopped = True
        self.counts["stopped"] += 1
        where = "this run" if budget.period == "run" else key
        message = (
            f"run {ledger.run_id} stopped by {budget.describe()}: {spend} {self.currency} "
            f"spent in {where}, over its {budget.amount}"
        )
        if ledger.run is not None:
            ledger.run.emit(
                StreamEventType.GUARDRAIL,
                BudgetGuardrail(
                    "budget",
                    str(spend),
                    str(budget.amount),
                    message,
                    budget.id,
                    budget.name,
                    budget.period,
                    "run" if budget.period == "run" else key,
                ),
            )
        log.warning("%s", message)
        stop(message)

    def _alert(self, ledger: Ledger, budget: Budget, key: str, spend: Decimal) -> None:
        if budget.period == "run":
            if budget.id in ledger.alerted:
                return
            ledger.alerted.add(budget.id)
        else:
            if (budget.id, key) in self.alerted:
                return
            self.alerted.add((budget.id, key))
            self.claiming.add((budget.id, key))
        where = "run " + ledger.run_id if budget.period == "run" else key
        payload = {
            "name": "budget_alert",
            "budget_id": budget.id,
            "budget": budget.name,
            "kind": budget.kind,
            "period": budget.period,
            "period_key": "run" if budget.period == "run" else key,
            "workflow_id": budget.workflow_id,
            "provider": budget.provider,
            "spend": str(spend),
            "amount": str(budget.amount),
            "currency": self.currency,
            "run_id": ledger.run_id,
            "message": f"{budget.describe()} reached: {spend} of {budget.amount} "
            f"{self.currency} spent in {where}",
        }
        if ledger.run is not None:
            ledger.run.emit(StreamEventType.CUSTOM, payload)
        log.warning("%s", payload["message"])
        self.schedule(lambda: self.claim_and_send(budget, key, spend, payload))

    def claim_and_send(
        self, budget: Budget, key: str, spend: Decimal, payload: dict[str, Any]
    ) -> None:
        """Record the alert (once per period across processes) and send it (thread pool)."""
        if budget.period != "run":
            try:
                claimed = self.store.claim_budget_alert(budget.id, key)
            finally:
                self.claiming.discard((budget.id, key))
            if not claimed:
                return  # another service process alerted for this period already
        self.counts["alerts"] += 1
        for listener in self.alert_listeners:
            try:
                listener(budget, spend, key)
            except Exception:
                log.exception("a budget alert listener failed")
        if self.alert_sink is not None:
            self.alert_sink.handle(
                BackpackEvent(
                    self.counts["alerts"],
                    time.time(),
                    payload["run_id"],
                    None,
                    None,
                    None,
                    None,
                    StreamEventType.CUSTOM,
                    payload,
                )
            )


def _field(payload: Any, name: str) -> Any:
    if isinstance(payload, Mapping):
        return payload.get(name)
    return getattr(payload, name, None)


def _this_run(run_id: str) -> Run | None:
    """The run whose node emitted the event being handled, if it is ``run_id``."""
    try:
        run = current_run()
    except Exception:  # noqa: BLE001 - outside a run (an event handed over from a thread)
        return None
    return run if run.run_id == run_id else None
