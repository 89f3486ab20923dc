"""Executors: where the service's runs execute.

The API decides *whether* a run starts (validation, budgets, the queue bound) and stores it
``queued``; the executor decides *where* it executes. An executor is a plugin like any other:
``backpackflow_register_executors(register)`` registers ``register(name, factory)`` and the
``executor`` setting names the one the service uses; ``factory(settings)`` returns an object
with the methods of :class:`Executor`. The built-in ``in-process`` executor (the default) is
registered through the same hook by this module's plugin (entry point ``executor_inprocess``),
as tox 4 registers its own built-ins: a third party's executor (``backpackflow_celery``'s
``celery``) has nothing the built-in one lacks.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

from backpackflow import ConfigError, hookimpl
from backpackflow.plugins import ExecutorRegistrar, Registry

if TYPE_CHECKING:  # type-only back reference: runs.py imports this module
    from backpackflow import Flow

    from .runs import RunManager
    from .settings import Settings

IN_PROCESS = "in-process"


class Executor(Protocol):
    """What the service asks of an executor. ``remote``: runs execute in other processes
    (workers), so this process holds no handle for them (cancel goes through the store and
    streams read the database)."""

    name: str
    remote: bool

    async def start(self, manager: RunManager) -> None: ...

    async def shutdown(self, manager: RunManager) -> None: ...

    async def launch(
        self, manager: RunManager, run: dict[str, Any], flow: Flow, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        """Execute a new run (stored ``queued``, its inputs resolved); returns the run."""
        ...

    async def start_existing(self, manager: RunManager, run_id: str, answer: Any) -> dict[str, Any]:
        """Go on with a stored run from its checkpoint (a fork, a paused run's answer)."""
        ...

    async def recover(self, manager: RunManager) -> dict[str, list[str]]:
        """At start: the active runs no live process holds (by their lease)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ``/health`` and ``backpackflow workers`` show about the executor."""
        ...


class InProcessExecutor:
    """Runs execute as asyncio tasks of the service process (one machine)."""

    name = IN_PROCESS
    remote = False

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    async def start(self, manager: RunManager) -> None:
        return None

    async def shutdown(self, manager: RunManager) -> None:
        return None

    async def launch(
        self, manager: RunManager, run: dict[str, Any], flow: Flow, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        return await manager.launch_here(run, flow, inputs)

    async def start_existing(self, manager: RunManager, run_id: str, answer: Any) -> dict[str, Any]:
        return await manager.start_stored_here(run_id, answer)

    async def recover(self, manager: RunManager) -> dict[str, list[str]]:
        return await manager.recover_here()

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}


def make_executor(registry: Registry, settings: Settings) -> Executor:
    """The executor the ``executor`` setting names, built from its registered factory.

    A registry built by hand without this module's plugin (tests, an embedding application)
    still gets the built-in in-process executor: it is this module's own class."""
    name = settings.executor
    record = registry.executors.get(name)
    if record is None:
        if name == IN_PROCESS:
            return InProcessExecutor(settings)
        known = ", ".join(sorted({IN_PROCESS, *registry.executors})) or IN_PROCESS
        hint = " (pip install 'backpackflow[workers]')" if name == "celery" else ""
        raise ConfigError(
            f"executor {name!r} (the executor setting): no installed plugin registers it"
            f"{hint}; installed executors: {known}"
        )
    try:
        executor: Executor = record.factory(settings)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"executor {name!r} of plugin {record.plugin!r} failed to start: {exc}"
        ) from exc
    return executor


@hookimpl
def backpackflow_register_executors(register: ExecutorRegistrar) -> None:
    register(
        IN_PROCESS,
        InProcessExecutor,
        description="runs execute in the service process (one machine; the default)",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
