"""Nodes: PocketFlow's ``prep → exec → post`` lifecycle, with retries, fallback and telemetry.

A node never logs: the runner emits ``node_start``, ``prep_complete``, ``exec_complete``,
``node_end`` (or ``error`` with the phase) and ``retry`` for it. A node reads and writes the
Backpack only through the view it is handed (``prep(backpack)``, ``post(backpack, ...)``), which
is bound to its identity.

Porting from PocketFlow: change the imports, pass a :class:`~backpackflow.Backpack` instead of the
``shared`` dict, and use ``backpack.unpack(key)`` / ``backpack.pack(key, value)`` where the node
read or wrote ``shared[key]``. ``>>``, ``- "action" >>``, ``max_retries``, ``wait``,
``exec_fallback``, ``cur_retry``, batch and async nodes behave as they do there.
"""

from __future__ import annotations

import copy
import re
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, overload

import attrs

from backpackflow.config import (
    NodeConfig,
    RetryConfig,
    restore_env_refs,
    structure,
    structure_params,
    unstructure_params,
)
from backpackflow.errors import ConfigError, NodeDefinitionError
from backpackflow.namespaces import validate_namespace
from backpackflow.plugins import get_registry
from backpackflow.runner.drive import run_single_node, run_single_node_sync
from backpackflow.runner.lifecycle import exec_phase

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.backpack import Backpack, BackpackView
    from backpackflow.plugins import Registry
    from backpackflow.runner.run import RunResult

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

Condition = Callable[[Mapping[str, Any]], Any]
"""An edge condition: called with the condition context, truthy to follow the edge. Conditions
from flow configs are compiled objects that are also callable (see
``backpackflow.loader.conditions``)."""


class Edge(NamedTuple):
    """A labelled edge: follow it to ``target`` when the node returns ``action`` and ``when``
    (if any) holds. ``mappings``: the key mappings a flow config declared on the edge, kept to
    show and export them (the loader binds them to the target node, which applies them)."""

    target: BaseNode
    action: str
    when: Condition | None = None
    mappings: Mapping[str, str] | None = None


def default_node_id(cls: type) -> str:
    """``SummarizeNode`` → ``summarize_node``, ``HTTPFetch`` → ``http_fetch``: a stable, readable
    id for nodes given none."""
    return _CAMEL.sub("_", cls.__name__).lower()


def _check_id(value: str, what: str = "node id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise NodeDefinitionError(
            f"invalid {what} {value!r}: ids start with a letter or digit and hold only letters, "
            "digits, '_', '-', '.' or ':'"
        )
    return value


class BaseNode:
    """Common ground of nodes and flows: identity, params, successors and ``>>`` wiring.

    ``id`` identifies the node in events, permissions and flow configs (default: the class name
    in snake case, made unique within a flow); ``name`` is its display name (default: the class
    name); ``namespace`` is its segment of the namespace path, composed with the enclosing flows'
    namespaces at run time.

    ``params``: a node class may declare ``Params`` (an attrs class); ``self.params`` is then an
    instance of it, checked at construction. Without ``Params``, ``self.params`` is a dict, as in
    PocketFlow, and flows pass theirs down (``set_params``).
    """

    Params: ClassVar[type | None] = None
    is_async: ClassVar[bool] = False
    #: A bare BaseNode (as in PocketFlow) makes one attempt and has no fallback; Node adds both.
    max_retries: int = 1
    blocking: bool = False
    #: The registered node type this node was loaded as (set by the loader), for events and
    #: exports; ``None`` for nodes built in code (the registry knows their class).
    node_type: str | None = None
    #: Bindings from the node's config (``"inputs"``), resolved by the node at run time.
    inputs: Mapping[str, Any] = MappingProxyType({})
    #: Key mappings from the node's config (``"mappings"``: ``{name: Backpack key}``), kept to
    #: export them; the loader binds them (with its incoming edges') to the node.
    mappings: Mapping[str, str] = MappingProxyType({})
    #: The DependencyContainer the loader built the node with (``None`` for nodes built in
    #: code that need none); use :meth:`dependency`.
    deps: Any = None
    #: The plugin Registry the loader built the node with (``None``: the installed plugins);
    #: use :meth:`plugin_registry`.
    registry: Any = None
    #: Where the loader resolved ``${NAME}`` references in the params (events show those).
    env_refs: Any = None
    #: Weak references to the flows whose compiled graph holds this node (see
    #: :meth:`_graph_changed`): changing the node's edges invalidates exactly those, so wiring
    #: one flow never recompiles another. A plain list: compiling a 100,000-node graph makes
    #: one per node, and a WeakSet each measured several times slower to compile.
    _watchers: list[weakref.ref[Any]] | None = None

    def __init__(
        self,
        *,
        id: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        params: Any = None,
    ) -> None:
        self._auto_id = id is None
        self.id = _check_id(id) if id is not None else default_node_id(type(self))
        self.name = name if name is not None else type(self).__name__
        if namespace is not None:
            validate_namespace(namespace, where=f"node {self.id!r}")
        self.namespace = namespace
        self.params = self._structure_params(params)
        self.successors: dict[str, list[Edge]] = {}

    # -------------------------------------------------------------- params

    def _structure_params(self, params: Any) -> Any:
        cls = type(self).Params
        if cls is None:
            if params is None:
                return {}
            if not isinstance(params, Mapping):
                raise NodeDefinitionError(
                    f"node {self.id!r}: params must be a mapping (this node class declares no "
                    f"Params class), got {type(params).__name__}"
                )
            return dict(params)
        if params is None:
            try:
                return cls()
            except TypeError as exc:
                raise NodeDefinitionError(
                    f"node {self.id!r} ({type(self).__name__}) needs params: {exc}"
                ) from None
        if isinstance(params, cls):
            return params
        if isinstance(params, Mapping):
            return structure_params(cls, params, where=f"node {self.id!r} params")
        raise NodeDefinitionError(
            f"node {self.id!r}: params must be a {cls.__name__} or a mapping, got "
            f"{type(params).__name__}"
        )

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Set runtime params (PocketFlow). For a node with a ``Params`` class, the given
        fields override the node's own; unknown fields are an error."""
        if type(self).Params is None:
            self.params = dict(params)
            return
        if not params:
            return
        fields = {f.name for f in attrs.fields(type(self.params))}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise NodeDefinitionError(
                f"node {self.id!r}: unknown params {unknown}; {type(self).Params.__name__} has "  # type: ignore[union-attr]
                f"{sorted(fields)}"
            )
        self.params = attrs.evolve(self.params, **params)

    def params_json(self) -> Any:
        """The params as JSON data (for events and exports)."""
        if type(self).Params is None:
            return self.params
        return unstructure_params(self.params)

    # -------------------------------------------------------------- wiring

    @overload
    def next(
        self, node: BaseNode, action: str = "default", *, when: Condition | None = None
    ) -> BaseNode: ...

    @overload
    def next(self, node: None, action: str = "default", *, when: None = None) -> None: ...

    def next(
        self, node: BaseNode | None, action: str = "default", *, when: Condition | None = None
    ) -> BaseNode | None:
        """Add an edge to ``node`` for ``action`` (optionally only ``when`` the condition
        holds). Several edges for one action fan out. Returns ``node`` for chaining.

        ``node`` ``None`` (PocketFlow's ``node - "end" >> None``) marks ``action`` as an explicit
        end of the flow: the flow ends there without the warning an action with no edge gets."""
        if node is None:
            if not isinstance(action, str) or not action:
                raise NodeDefinitionError(f"node {self.id!r}: an action must be a non-empty string")
            if when is not None:
                raise NodeDefinitionError(
                    f"node {self.id!r}: an explicit end (action {action!r} >> None) takes no "
                    "condition"
                )
            self.successors.setdefault(action, [])
            self._graph_changed()
            return None
        if not isinstance(node, BaseNode):
            raise NodeDefinitionError(
                f"node {self.id!r}: an edge must point to a node, got {type(node).__name__}"
            )
        if not isinstance(action, str) or not action:
            raise NodeDefinitionError(f"node {self.id!r}: an action must be a non-empty string")
        if when is not None and not callable(when):
            raise NodeDefinitionError(
                f"edge {self.id!r} -> {node.id!r}: 'when' must be callable (a condition), got "
                f"{type(when).__name__}"
            )
        self.successors.setdefault(action, []).append(Edge(node, action, when))
        self._graph_changed()
        return node

    @overload
    def __rshift__(self, other: BaseNode) -> BaseNode: ...

    @overload
    def __rshift__(self, other: None) -> None: ...

    def __rshift__(self, other: BaseNode | None) -> BaseNode | None:
        return self.next(other)

    def __sub__(self, action: str) -> _ConditionalTransition:
        if isinstance(action, str):
            return _ConditionalTransition(self, action)
        raise TypeError("an action must be a string: use node - 'action' >> other")

    # -------------------------------------------------------------- lifecycle (override these)

    def prep(self, backpack: BackpackView) -> Any:
        """Read what the node needs from the Backpack; the result goes to ``exec``."""
        return None

    def exec(self, prep_res: Any) -> Any:
        """Do the work (call the model, the tool ...). Retried on exceptions; no Backpack."""
        return None

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        """Write results to the Backpack and return the action (``None`` means "default")."""
        return None

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        """Called when ``exec`` failed; the default re-raises the error."""
        raise exc

    def plugin_registry(self) -> Registry:
        """The plugin registry this node resolves tools, providers and languages in: the one
        it was loaded with (the loader passes its own), else the installed plugins (a node
        built in code)."""
        if self.registry is not None:
            return self.registry  # type: ignore[no-any-return]
        return get_registry()

    def dependency(self, name: str) -> Any:
        """The dependency ``name`` from the node's container (built on first use)."""
        if self.deps is None:
            raise ConfigError(
                f"node {self.id!r} needs dependency {name!r} but has no DependencyContainer: "
                "load it with FlowLoader.load_flow(config, deps) or set node.deps"
            )
        return self.deps.get(name)

    # -------------------------------------------------------------- flows as data

    def to_config(self, type_name: str | None = None) -> NodeConfig:
        """This node as a :class:`~backpackflow.config.NodeConfig` (flows as data);
        ``type_name``: its registered node type (default: the type it was loaded as, else the
        type its class is registered as)."""
        if type_name is None:
            type_name = self.node_type or self._registered_type_name()
        if type(self).Params is not None:
            params: Any = unstructure_params(self.params)
        else:
            params = copy.deepcopy(self.params) if self.params else {}
        # references back as written, any other literal "${" escaped as "$${" (round trip)
        params = restore_env_refs(params, self.env_refs or {})
        inputs = copy.deepcopy(dict(self.inputs or {}))
        inputs = restore_env_refs(inputs, getattr(self, "input_env_refs", None) or {})
        return NodeConfig(
            type=type_name,
            id=self.id,
            name=self.name if self.name != type(self).__name__ else None,
            namespace=self.namespace,
            params=params,
            inputs=inputs,
            mappings=dict(self.mappings),
            dependencies=list(getattr(self, "extra_dependencies", None) or []),
            retry=self._retry_config(),
        )

    def _registered_type_name(self) -> str:
        registered = self.plugin_registry().node_type_of(type(self))
        if registered is None:
            raise ConfigError(
                f"node {self.id!r} ({type(self).__name__}) has no registered node type, so it "
                "cannot be exported; register its class through backpackflow_register_node_types "
                "or loader.register(name, cls)"
            )
        return registered.name

    def _retry_config(self) -> RetryConfig | None:
        """The retry settings ``to_config`` exports (a bare BaseNode has none)."""
        return None

    @classmethod
    def from_config(cls, config: NodeConfig | Mapping[str, Any], deps: Any = None) -> BaseNode:
        """Build a node of this class from a NodeConfig (or its JSON) and a
        DependencyContainer. The node receives ``id``, ``name``, ``namespace``, ``params`` (and
        retry settings for :class:`~backpackflow.Node` classes); ``inputs``, ``mappings`` and the
        dependency container are set as the ``inputs``, ``mappings`` and ``deps`` attributes."""
        if not isinstance(config, NodeConfig):
            config = structure(dict(config), NodeConfig)
        kwargs: dict[str, Any] = {"id": config.id, "namespace": config.namespace}
        if config.name is not None:
            kwargs["name"] = config.name
        params = config.params
        if params not in (None, {}) or cls.Params is not None:
            kwargs["params"] = params if params is not None else {}
        kwargs.update(cls._retry_kwargs(config))
        node = cls(**kwargs)
        node.node_type = config.type  # so to_config() needs no registry lookup
        node.inputs = dict(config.inputs)
        if config.mappings:
            node.mappings = dict(config.mappings)
        node.deps = deps
        node.extra_dependencies = list(config.dependencies)  # type: ignore[attr-defined]
        if config.retry is not None:
            node.retry_config = config.retry  # type: ignore[attr-defined]
        return node

    @classmethod
    def _retry_kwargs(cls, config: NodeConfig) -> dict[str, Any]:
        """The constructor arguments of ``config.retry`` (a bare BaseNode takes none)."""
        if config.retry is not None:
            raise ConfigError(f"node {config.id!r}: {cls.__name__} takes no retry settings")
        return {}

    # -------------------------------------------------------------- running alone

    def run(self, backpack: Backpack, **options: Any) -> Any:
        """Run this node once, without following its successors (PocketFlow's ``node.run``).
        Options are those of :meth:`backpackflow.Flow.execute`."""
        result = run_single_node_sync(self, backpack, **options)
        result.raise_for_status()
        return result.action

    async def run_async(self, backpack: Backpack, **options: Any) -> Any:
        result: RunResult = await run_single_node(self, backpack, **options)
        result.raise_for_status()
        return result.action

    # -------------------------------------------------------------- engine hooks

    #: Run the exec phase; returns (result, attempts). Overridden by batch nodes and flows;
    #: the lifecycle runs this plain one inline (see :mod:`backpackflow.runner.lifecycle`).
    _exec_phase = exec_phase

    def _needs_loop(self) -> bool:
        """True when running this node requires an asyncio event loop."""
        return self.is_async

    def _steps_per_run(self) -> int:
        """How many node executions one pass through this node makes (a flow: its own and
        its nodes'); the default ``max_steps`` of a run scales with it."""
        return 1

    def _graph_changed(self) -> None:
        """This node's edges changed: the flows whose compiled graph holds it compile again
        before their next run (and the flows holding those, whose graph facts depend on them)."""
        watchers = self._watchers
        if watchers:
            for ref in list(watchers):
                flow = ref()
                if flow is None:
                    watchers.remove(ref)
                else:
                    flow._invalidate()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r}>"


class _ConditionalTransition:
    """``node - "action"``: waits for ``>> target``."""

    __slots__ = ("action", "src")

    def __init__(self, src: BaseNode, action: str) -> None:
        self.src = src
        self.action = action

    @overload
    def __rshift__(self, target: BaseNode) -> BaseNode: ...

    @overload
    def __rshift__(self, target: None) -> None: ...

    def __rshift__(self, target: BaseNode | None) -> BaseNode | None:
        return self.src.next(target, self.action)


def iter_nodes(start: BaseNode, seen: set[int] | None = None) -> Iterable[BaseNode]:
    """Every node reachable from ``start`` through edges, in breadth-first order. ``seen``
    (ids of nodes already walked, updated here) lets several walks share the work: each node
    is yielded once over all of them."""
    seen = set() if seen is None else seen
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        for edges in node.successors.values():
            queue.extend(edge.target for edge in edges)
