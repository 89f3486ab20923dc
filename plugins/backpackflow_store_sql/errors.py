"""Errors of the SQL run store.

Each subclasses :class:`backpackflow.errors.BackpackFlowError` (so callers can catch everything
the project raises) and the matching built-in, so an HTTP layer can map ``KeyError`` to 404 and
``ValueError`` to 400/409 without knowing this package.
"""

from __future__ import annotations

from backpackflow import BackpackFlowError


class StoreError(BackpackFlowError):
    """Base of every error the SQL run store raises on purpose."""


class NotFound(StoreError, KeyError):
    """A workflow, run or binding id is not in the store."""

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.id = identifier

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidData(StoreError, ValueError):
    """An argument is not acceptable (not JSON, unknown status, bad limit ...)."""


class InvalidTransition(StoreError, ValueError):
    """A run status change that the run lifecycle does not allow."""

    def __init__(self, run_id: str, current: str, requested: str, allowed: tuple[str, ...]):
        hint = f"allowed from {current!r}: {', '.join(allowed)}" if allowed else "it is final"
        super().__init__(f"run {run_id!r} cannot go from {current!r} to {requested!r} ({hint})")
        self.run_id = run_id
        self.current = current
        self.requested = requested


class VersionConflict(StoreError, ValueError):
    """A workflow update named an ``expected_version`` that is no longer current."""


class InvalidEvent(StoreError, ValueError):
    """A trace event document is malformed; the message names the event and the field."""


class EventConflict(InvalidEvent):
    """An event reuses a ``seq`` of another event of the run, or an id of another run."""


class StoreConfigError(StoreError, ValueError):
    """The database URL is malformed or names an unsupported database."""


class DatabaseUnavailable(StoreError, ConnectionError):
    """The database could not be reached or opened."""


class SchemaNotReady(StoreError, RuntimeError):
    """The database has no run store schema, or an older one: run ``SqlRunStore.upgrade()``."""


class WriterClosed(StoreError, RuntimeError):
    """An event was handed to an :class:`EventWriter` after :meth:`EventWriter.close`."""


class SpillFileBusy(StoreError, RuntimeError):
    """Another writer (of this or another process) holds the spill file's lock."""


class LeaseLost(StoreError, RuntimeError):
    """A write (or renewal, release) of a run carried a fencing token that is not the run's
    current one: another worker acquired the run's lease since, or it was released. Nothing of
    the write is stored; the worker must stop driving the run."""

    def __init__(self, run_id: str, given: int, current: int, owner: str | None) -> None:
        if given == current:  # the holder released it already
            problem = f"the lease of token {given} was released"
        else:
            holder = f"held by {owner!r}" if owner is not None else "since released"
            problem = f"lease token {given} is stale; the current token is {current} ({holder})"
        super().__init__(f"run {run_id!r}: {problem}; stop driving this run")
        self.run_id = run_id
        self.given = given
        self.current = current
        self.owner = owner
