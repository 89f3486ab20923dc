"""Sink plumbing: building a registered event sink from its options, the ``name:VALUE``
shorthand, and subscribing sinks to a streamer."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from backpackflow.config import structure_params
from backpackflow.errors import PluginError
from backpackflow.events.bus import EventStreamer
from backpackflow.events.types import Subscription
from backpackflow.plugins import EventSink, Registry
from backpackflow.policy.secrets import collect_named_secrets

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.policy.sandbox import SandboxPolicy
    from backpackflow.policy.secrets import SecretMasker


def make_sink(
    registry: Registry,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    policy: SandboxPolicy | None = None,
    secrets: SecretMasker | None = None,
) -> EventSink:
    """Build the sink ``name`` with ``options`` (checked against its options class).

    ``policy``: the sandbox policy the sink must obey when a flow the operator does not trust
    declared it (where a webhook may post, where a file may be written); it is passed to sink
    factories that take a ``policy`` keyword, and a sink whose factory takes none cannot be
    built under a restrictive policy. Option values whose names say they are secrets
    (``secret``, ``token``, an ``Authorization`` header) are added to ``secrets``."""
    sink_type = registry.event_sink(name)
    if secrets is not None and options:
        collect_named_secrets(options, secrets)
    extra: dict[str, Any] = {}
    if policy is not None and not policy.trusted:
        if not _takes_keyword(sink_type.factory, "policy"):
            raise PluginError(
                f"sink {name!r} (plugin {sink_type.plugin!r}) cannot run under a sandbox "
                "policy: its factory takes no 'policy' keyword"
            )
        extra["policy"] = policy
    if sink_type.options is None:
        if options:
            raise PluginError(f"sink {name!r} takes no options, got {sorted(options)}")
        return sink_type.factory(None, **extra)
    structured: Any = structure_params(
        sink_type.options, dict(options or {}), where=f"sink {name!r}"
    )
    return sink_type.factory(structured, **extra)


def _takes_keyword(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        or p.kind is p.VAR_KEYWORD
        for p in parameters
    )


def parse_sink_spec(registry: Registry, spec: str) -> tuple[str, dict[str, Any]]:
    """``"file:run.jsonl"`` → ``("file", {"path": "run.jsonl"})`` (the sink's shorthand
    option); ``"console"`` → ``("console", {})``."""
    name, _, value = spec.partition(":")
    sink_type = registry.event_sink(name)
    if not value:
        return name, {}
    if sink_type.shorthand is None:
        raise PluginError(f"sink {name!r} takes no 'name:VALUE' shorthand; got {spec!r}")
    return name, {sink_type.shorthand: value}


def attach_sinks(streamer: EventStreamer, sinks: Iterable[EventSink]) -> list[Subscription]:
    """Subscribe every sink to every event of ``streamer``."""
    return [streamer.subscribe("*", sink.handle) for sink in sinks]
