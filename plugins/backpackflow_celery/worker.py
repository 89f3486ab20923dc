"""``backpackflow worker``: a Celery worker that drives many runs at once on one asyncio loop.

Celery's thread pool takes messages off the broker (``--concurrency`` at once, each held
unacknowledged until its run ends); each thread hands its run to the worker's one event loop
(:class:`WorkerRuntime`, a thread of its own) and waits. The loop runs the service's own
:class:`~backpackflow_server.runs.RunManager` with the in-process executor, so a run executes
exactly as it would in ``serve``: same sandbox policy, event writers, checkpoints, budgets.

What is ours, because Celery has no notion of it, is the run's **lease** (see
:mod:`backpackflow_store_sql.leases`): before driving a run the worker acquires it and gets a
fencing token that every store write of the run carries; a heartbeat renews it every third
of ``lease_seconds``. The heartbeat also reads the run's status, so a cancel stored by any API
instance stops the run within that third. A worker that loses the lease (it stalled past the
expiry and another worker took the run) stops the run; its late writes are refused anyway.
A message for a run another worker holds (a redelivered copy) waits for that lease to expire
(the holder died: it takes the run over and resumes it from its checkpoint) or lets the run go
once the holder is seen renewing it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery import Celery

from backpackflow.loader import FlowLoader
from backpackflow.plugins import Registry
from backpackflow_server.executors import InProcessExecutor
from backpackflow_server.runs import UNSET, FlowProblems, RunConflict, RunManager, error_summary
from backpackflow_server.seeding import read_seeds, seed_folders
from backpackflow_server.settings import Settings
from backpackflow_store_sql import InvalidTransition, LeaseLost, NotFound
from backpackflow_store_sql.store import FINAL_STATUSES
from backpackflow_store_sql.writer import is_transient

from .app import TASK, make_celery

log = logging.getLogger("backpackflow_celery.worker")

_T = TypeVar("_T")
#: Why a worker stops a run whose lease another worker took.
LEASE_LOST = "the worker lost the run's lease: another worker drives it now"


def owner_name(hostname: str) -> str:
    """This worker process as a lease owner: the Celery node name and the process id."""
    return f"{hostname}:{os.getpid()}"


class WorkerRuntime:
    """The worker's event loop (a thread) with the run manager every run executes in."""

    def __init__(self, settings: Settings, registry: Registry, owner: str) -> None:
        from backpackflow_server.app import open_store

        self.settings = settings
        self.owner = owner
        self.ttl = settings.lease_seconds
        self.store: Any = open_store(registry, settings.database_url)
        self.store.upgrade()
        loader = FlowLoader(registry)
        # the demo workflows the API instances seeded read the files beside their flow files,
        # as they do when the API runs them: the same settings give the same seeds
        self.manager = RunManager(
            self.store,
            loader,
            settings,
            seed_folders(read_seeds(settings, registry, loader)),
            executor=InProcessExecutor(settings),
        )
        self.loop = asyncio.new_event_loop()
        # store calls of heartbeats and runs: enough threads that runs never starve heartbeats
        self.loop.set_default_executor(
            ThreadPoolExecutor(settings.max_concurrent_runs * 2 + 4, "backpackflow-store")
        )
        self._thread = threading.Thread(target=self.loop.run_forever, name="backpackflow-runs")
        self._thread.start()
        self.call(self.manager.start())

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop and wait for it (from a Celery pool thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Store what the writers hold, stop the loop, close the store."""
        try:
            self.call(self.manager.shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()
            self.store.close()

    async def _off(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    # ------------------------------------------------------------------ one run

    async def execute(self, run_id: str, answer: Any = UNSET) -> str:
        """Drive run ``run_id`` to its end (or pause) under its lease; what happened."""
        try:
            run = await self._off(self.store.get_run, run_id)
        except NotFound:
            return "no such run (deleted)"
        if run["status"] in FINAL_STATUSES:
            return f"already {run['status']}"
        if run["status"] == "paused" and answer is UNSET:
            return "paused: waiting for an answer"
        token = await self._acquire(run_id)
        if token is None:
            return "held by another live worker"
        beat = asyncio.ensure_future(self._heartbeat(run_id, token))
        try:
            return await self._drive(run_id, token, answer)
        finally:
            beat.cancel()
            try:
                await self._off(self.store.release_lease, run_id, token)
            except LeaseLost:
                pass
            except Exception:
                log.exception("run %s: could not release its lease", run_id)
            self.manager.lease_tokens.pop(run_id, None)

    async def _acquire(self, run_id: str) -> int | None:
        """The run's lease token; ``None`` when a live worker holds the run (it renewed its
        lease while we waited) or the run ended meanwhile."""
        lease = await self._off(self.store.acquire_lease, run_id, self.owner, self.ttl)
        if lease is not None:
            return int(lease.token)
        first = await self._off(self.store.get_lease, run_id)
        # wait past one expiry: a dead holder's lease expires, a live holder renews it
        deadline = self.loop.time() + self.ttl * 1.5
        while self.loop.time() < deadline:
            await asyncio.sleep(self.ttl / 6)
            lease = await self._off(self.store.acquire_lease, run_id, self.owner, self.ttl)
            if lease is not None:
                run = await self._off(self.store.get_run, run_id)
                if run["status"] in FINAL_STATUSES:  # the holder finished it
                    await self._off(self.store.release_lease, run_id, lease.token)
                    return None
                return int(lease.token)
            now = await self._off(self.store.get_lease, run_id)
            if now["token"] != first["token"] or now["expires_at"] != first["expires_at"]:
                return None  # renewed, or taken over: a live worker drives it
        return None

    async def _drive(self, run_id: str, token: int, answer: Any) -> str:
        try:
            started = await self.manager.drive(run_id, token, answer)
        except (RunConflict, FlowProblems) as exc:
            reason = f"the run cannot start on a worker: {exc}"
            try:
                await self._off(self.store.finish_run, run_id, "failed", reason, lease_token=token)
            except (InvalidTransition, LeaseLost):
                pass
            return "failed"
        if isinstance(started, dict):
            return str(started["status"])
        assert started.task is not None
        await asyncio.shield(started.task)
        summary = started.summary or {}
        return str(summary.get("status") or "ended")

    async def _heartbeat(self, run_id: str, token: int) -> None:
        """Renew the lease every third of its span; stop the run if it was canceled in the
        store or the lease was lost."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._off(self.store.renew_lease, run_id, token, self.ttl)
                run = await self._off(self.store.get_run, run_id)
            except LeaseLost:
                log.warning("run %s: %s", run_id, LEASE_LOST)
                self.manager.stop(run_id, LEASE_LOST)
                return
            except Exception as exc:  # noqa: BLE001 - the database may come back in time
                log.warning("run %s: lease heartbeat failed: %s", run_id, exc)
                continue
            if run["status"] == "canceled":
                self.manager.stop(run_id, run.get("error_summary") or "canceled through the API")


_runtime: WorkerRuntime | None = None


def register_task(app: Celery) -> None:
    """The run task on ``app``: executes in the worker's loop, acknowledged at its end."""

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True
    )
    def run(self: Any, run_id: str, answer: Any = UNSET) -> str:
        runtime = _runtime
        if runtime is None:  # pragma: no cover - only inside backpackflow worker
            raise RuntimeError("backpackflow.run executes in backpackflow worker only")
        try:
            outcome = runtime.call(runtime.execute(str(run_id), answer))
        except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the worker
            if is_transient(exc):  # the database is down: the run stays ours to do later
                raise self.retry(exc=exc, countdown=5, max_retries=None) from None
            summary = error_summary(exc, f"run {run_id}: the worker failed driving it")
            log.error("run %s: %s", run_id, summary)
            return f"failed: {summary}"
        log.info("run %s: %s", run_id, outcome)
        return outcome


def run_worker(
    settings: Settings,
    registry: Registry,
    *,
    broker_url: str,
    concurrency: int,
    hostname: str | None,
    loglevel: str,
) -> int:
    """Run a worker until it is told to stop (SIGTERM / Ctrl-C: warm shutdown, the runs it
    holds end first; SIGKILL: the broker redelivers them to other workers)."""
    global _runtime
    app = make_celery(
        broker_url, visibility_timeout=settings.visibility_timeout, queue=settings.broker_queue
    )
    register_task(app)
    node = hostname or f"backpackflow@{socket.gethostname()}"
    # the worker's slots are its Celery threads: runs never queue inside it
    settings = settings.model_copy(
        update={"max_concurrent_runs": concurrency, "executor": "in-process"}
    )
    _runtime = WorkerRuntime(settings, registry, owner_name(node))
    try:
        worker = app.Worker(
            pool_cls="threads",
            concurrency=concurrency,
            hostname=node,
            queues=[settings.broker_queue],
            loglevel=loglevel.upper(),
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        worker.start()
        return int(getattr(worker, "exitcode", 0) or 0)
    finally:
        runtime, _runtime = _runtime, None
        runtime.close()
