"""The exception hierarchy.

Every error says what went wrong, where (key, node id, JSON path, plugin name) and, where there
is one, how to fix it. Callers catch :class:`BackpackFlowError` to handle anything the project
raises; the subclasses also inherit the matching built-in (``KeyError``, ``ValueError`` ...) so
code written against plain Python keeps working.
"""

from __future__ import annotations


class BackpackFlowError(Exception):
    """Base of every error the project raises on purpose."""


class BackpackError(BackpackFlowError):
    """A Backpack operation could not be carried out."""


class InvalidKey(BackpackError, ValueError):
    """A key is not a usable Backpack key."""


class InvalidValue(BackpackError, TypeError):
    """A value is not JSON data (``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
    finite ``float``, ``bool`` or ``None``)."""


class InvalidNamespace(BackpackFlowError, ValueError):
    """A namespace or namespace pattern is malformed."""


class InvalidSetting(BackpackFlowError, ValueError):
    """An argument of a kernel object is out of range (``Backpack(max_history=0)``, a negative
    ``history_size``, ``max_retries=0`` ...); the message names it and what is allowed."""


class KeyNotFound(BackpackError, KeyError):
    """A required key is not in the Backpack. ``key`` is the key; ``node_id`` the node that
    asked (``None`` for a read made outside nodes)."""

    def __init__(self, message: str, *, key: str | None = None, node_id: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.node_id = node_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ReadDenied(KeyNotFound):
    """Graceful mode: a required read (``unpack_required``, ``get_item``) of a key the node may
    not read. The key counts as absent for that node (so code catching :class:`KeyNotFound`
    keeps working), but the message says the read was denied and ``rule`` says by what; the
    denial is recorded as every graceful denial is."""

    def __init__(self, message: str, *, key: str, node_id: str, rule: str) -> None:
        super().__init__(message, key=key, node_id=node_id)
        self.rule = rule


class AccessDenied(BackpackError, PermissionError):
    """A node tried to read or write a key its permissions do not allow."""

    def __init__(self, message: str, *, node_id: str, key: str, op: str, rule: str) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.key = key
        self.op = op
        self.rule = rule


class CommitNotFound(BackpackError, KeyError):
    """A commit id is not in this Backpack's history."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CommitEvicted(CommitNotFound):
    """A commit existed but was dropped by the Backpack's ``max_history`` bound."""


class SerializationError(BackpackFlowError, ValueError):
    """Serialized data (``from_json``) is malformed; the message names the JSON path."""


class FlowError(BackpackFlowError):
    """A flow is malformed (no start node, duplicate node ids, a bad edge condition ...)."""


class NodeDefinitionError(FlowError, TypeError):
    """A node is defined or constructed wrongly (bad params, bad retry settings ...)."""


class InvalidNodeSetting(NodeDefinitionError, InvalidSetting):
    """A node's retry settings are out of range (``max_retries`` < 1, a negative ``wait`` ...):
    a ``ValueError``, as PocketFlow code expects, and a :class:`NodeDefinitionError`."""


class GuardrailExceeded(BackpackFlowError):
    """A run limit (steps, time, tokens, cost) was exceeded; the run ended."""

    def __init__(self, message: str, *, limit: str, value: object, maximum: object) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.maximum = maximum


class RunCanceled(BackpackFlowError):
    """A run was canceled before it finished."""


class RunPaused(BackpackFlowError):
    """A run paused for an answer (``current_run().interrupt(...)``, an ``approval`` node): the
    error of a ``paused`` :class:`~backpackflow.RunResult`. It says what was asked; the run goes
    on with ``flow.run(checkpointer=..., run_id=..., answer=...)`` (or ``backpackflow resume``)."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        node_id: str,
        prompt: str,
        schema: object,
        deadline: float | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.node_id = node_id
        self.prompt = prompt
        self.schema = schema
        self.deadline = deadline


class CheckpointError(BackpackFlowError):
    """A run cannot resume or fork from its checkpoint: none is stored, it is damaged, the run
    has finished, or the flow changed since (the message says which)."""


class InterruptTimeout(BackpackFlowError):
    """Nobody answered an interrupt within its timeout (raised by ``interrupt()`` when a run is
    resumed after the deadline without an answer)."""


class NodeInterrupt(BaseException):
    """Raised by ``current_run().interrupt(...)`` to pause the run. A ``BaseException`` (as
    ``asyncio.CancelledError``) so that retries, ``exec_fallback`` and ``except Exception`` in
    node code let it through; the runner turns it into a ``paused`` run."""

    def __init__(self, paused: RunPaused) -> None:
        super().__init__(str(paused))
        self.paused = paused
        #: Set once the node that asked has reported it (an enclosing sub-flow node does not).
        self.reported = False


class PluginError(BackpackFlowError):
    """A plugin failed to load or registered something wrongly; the message names the plugin."""


class ConfigError(BackpackFlowError, ValueError):
    """A flow config (or node params) is invalid. ``problems`` lists each one as
    ``"$.json.path: what is wrong"``; the message holds them all."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
