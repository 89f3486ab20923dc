"""The ``celery`` executor: the API stores a run ``queued`` and sends its id to the broker.

A worker (:mod:`.worker`) takes it, acquires the run's lease and drives it. What the API still
does itself is what it must answer at once: whether a run may start (validation, budgets), and
whether a paused run's answer fits the schema it asked with (422 with its JSON path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from backpackflow import ConfigError
from backpackflow_server.durable import CannotResume, resume_plan
from backpackflow_server.runs import UNSET, FlowProblems, RunConflict

from .app import TASK, make_celery, redacted

if TYPE_CHECKING:
    from backpackflow import Flow
    from backpackflow_server.runs import RunManager
    from backpackflow_server.settings import Settings


class CeleryExecutor:
    """Sends runs to ``backpackflow worker`` processes through the broker."""

    name = "celery"
    remote = True

    def __init__(self, settings: Settings) -> None:
        if settings.broker_url is None:
            raise ConfigError(
                "executor 'celery' needs a broker: --broker redis://host:6379/0 (or "
                "BACKPACKFLOW_BROKER_URL)"
            )
        self.broker_url = settings.broker_url.get_secret_value()
        self.queue = settings.broker_queue
        self.app = make_celery(
            self.broker_url, visibility_timeout=settings.visibility_timeout, queue=self.queue
        )

    def send(self, run_id: str, answer: Any = UNSET) -> None:
        """Put run ``run_id`` on the queue (blocking: call it off the event loop)."""
        kwargs = {} if answer is UNSET else {"answer": answer}
        self.app.send_task(TASK, args=[run_id], kwargs=kwargs, queue=self.queue)

    async def start(self, manager: RunManager) -> None:
        """Fail at start, naming the broker, if it cannot be reached."""

        def connect() -> None:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=3)

        try:
            await manager.network_call(connect)
        except Exception as exc:  # noqa: BLE001 - kombu raises its transports' own errors
            raise ConfigError(
                f"executor 'celery': the broker {redacted(self.broker_url)} cannot be reached "
                f"({type(exc).__name__}: {exc})"
            ) from None

    async def shutdown(self, manager: RunManager) -> None:
        await run_in_threadpool(self.app.close)

    async def launch(
        self, manager: RunManager, run: dict[str, Any], flow: Flow, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        await manager.network_call(self.send, run["id"])
        return run

    async def start_existing(self, manager: RunManager, run_id: str, answer: Any) -> dict[str, Any]:
        """A fork (stored ``queued``) or a paused run's answer, checked here, then sent."""
        run = await run_in_threadpool(manager.store.get_run, run_id)
        run.pop("steps", None)
        if run["status"] not in ("queued", "running", "paused"):
            raise RunConflict(f"run {run_id!r} is {run['status']}; it cannot be started again")
        if run["status"] == "paused":
            flow = await manager.flow_of(run)
            try:
                plan = await manager.off_loop(resume_plan, manager.store, flow, run_id)
            except CannotResume as exc:
                raise RunConflict(f"run {run_id!r} cannot resume: {exc}") from None
            problems = plan.answer_problems(answer, answer is not UNSET)
            if problems:
                raise FlowProblems("answer", problems)
        await manager.network_call(self.send, run_id, answer)
        return run

    async def recover(self, manager: RunManager) -> dict[str, list[str]]:
        """Active runs no worker holds are sent again: a run stored but never sent (the API
        died in between) is not lost. A copy of a run already on the queue is harmless: the
        worker that takes it second finds the run held or ended and lets it go."""
        runs, held = await manager.unheld_active_runs()
        for run in runs:
            await manager.network_call(self.send, run["id"])
        return {"requeued": [run["id"] for run in runs], "held": held}

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "broker": redacted(self.broker_url), "queue": self.queue}
