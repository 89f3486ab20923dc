"""Every hook a backpackflow plugin can implement (pluggy project ``backpackflow``).

Hooks receive a *registry object* (a ``register`` callable or the CLI) rather than returning
values, so new keyword arguments can be added to ``register`` without breaking old plugins, and
every registration is attributed to the plugin that made it.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`, exposed through
an entry point in the ``backpackflow`` group::

    [project.entry-points.backpackflow]
    my_nodes = "my_package.plugin"

    # my_package/plugin.py
    from backpackflow import hookimpl

    @hookimpl
    def backpackflow_register_node_types(register):
        register("summarize", SummarizeNode, params=SummarizeParams, dependencies=["llm"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.plugins.registrars import (
        CommandRegistrar,
        ConditionLanguageRegistrar,
        DependencyFactoryRegistrar,
        EventSinkRegistrar,
        ExampleRegistrar,
        ExecutorRegistrar,
        LiveFeedRegistrar,
        MigrationRegistrar,
        NodeTypeRegistrar,
        RunStoreRegistrar,
        ToolRegistrar,
    )
    from backpackflow.plugins.registry import Registry

PROJECT = "backpackflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def backpackflow_register_node_types(register: NodeTypeRegistrar) -> None:
    """Register node types that flow configs can name.

    ``register(name, node_class, *, params=None, dependencies=(), description=None,
    reads=None, writes=None)``:
    ``params`` is the attrs class of the node's params (its JSON Schema is generated from it);
    ``dependencies`` are the names the node needs from the DependencyContainer; ``reads`` and
    ``writes`` are its data contract (``{Backpack key: type or JSON Schema}``; default: the
    class's ``reads`` / ``writes`` attributes).
    """


@hookspec
def backpackflow_register_event_sinks(register: EventSinkRegistrar) -> None:
    """Register event sinks (where events go: console, files, webhooks ...).

    ``register(name, factory, *, options=None, shorthand=None, description=None)``:
    ``factory(options)`` returns an :class:`~backpackflow.plugins.EventSink`; ``options`` is the
    attrs class of its settings; ``shorthand`` names the option set by ``--sink name:VALUE``.
    """


@hookspec
def backpackflow_register_dependency_factories(register: DependencyFactoryRegistrar) -> None:
    """Register factories of dependencies (LLM providers, caches, stores ...).

    ``register(name, factory, *, options=None, description=None)``: ``factory(options,
    container)`` builds the instance lazily, when a node first needs it.
    """


@hookspec
def backpackflow_register_run_stores(register: RunStoreRegistrar) -> None:
    """Register run stores (where the service keeps workflows, runs and traces).

    ``register(name, factory, *, schemes=(), description=None)``: ``factory(url)`` returns a
    store; ``schemes`` are the URL schemes it serves (``sqlite``, ``postgresql`` ...).
    """


@hookspec
def backpackflow_register_executors(register: ExecutorRegistrar) -> None:
    """Register executors (how the service runs flows: in-process, worker pools ...).

    ``register(name, factory, *, description=None)``.
    """


@hookspec
def backpackflow_register_live_feeds(register: LiveFeedRegistrar) -> None:
    """Register live feeds: how service processes share runs' events and control messages
    (cancel) so any API instance streams and cancels any run, wherever it executes.

    ``register(name, factory, *, schemes=(), description=None)``: ``factory(url)`` returns a
    feed (see ``backpackflow_server.feed.LiveFeed``); ``schemes`` are the URL schemes of the
    ``live_feed`` setting it serves (``redis``, ``rediss`` ...).
    """


@hookspec
def backpackflow_register_migrations(register: MigrationRegistrar) -> None:
    """Register flow-config migrations.

    ``register(from_version, to_version, migrate, *, description=None)``: ``migrate(config)``
    returns the config rewritten for ``to_version``; loading chains migrations to the current
    version.
    """


@hookspec
def backpackflow_register_tools(register: ToolRegistrar) -> None:
    """Register tools that tool nodes can call.

    ``register(name, function, *, params=None, description=None)``: ``function(arguments)``
    (sync or async) does the work; ``params`` is the attrs class of its arguments.
    """


@hookspec
def backpackflow_register_condition_languages(register: ConditionLanguageRegistrar) -> None:
    """Register languages for edge conditions and router rules.

    ``register(name, compile, *, source_type=str, description=None)``: ``compile(source)``
    returns a callable ``condition(context) -> value`` or raises ``ValueError`` explaining what
    is wrong; ``source_type`` is ``str`` (expressions) or ``dict`` (JSON objects).
    """


@hookspec
def backpackflow_register_examples(register: ExampleRegistrar) -> None:
    """Register example flows, shipped inside the plugin's package.

    ``register(name, folder, *, flow="flow.json", description=None)``: ``folder`` holds the
    flow file ``flow`` and the files it reads (``Path(__file__).parent / "research"``);
    ``description`` defaults to the flow's own. ``backpackflow examples list|copy`` shows and
    copies them; ``backpackflow serve`` seeds them into a new database as demo workflows.
    """


@hookspec
def backpackflow_register_commands(cli: CommandRegistrar) -> None:
    """Add subcommands to the ``backpackflow`` command line.

    ``cli.add(name, handler, *, help, arguments=None)``: ``arguments(parser)`` declares the
    options (argparse); ``handler(args, registry)`` runs the command and returns the exit
    status.
    """


@hookspec(historic=True)
def backpackflow_configure(kernel: Registry) -> None:
    """Called once the plugins are loaded, with the registry of everything registered (also for
    plugins registered later: the hook is historic)."""


def hook_names() -> list[str]:
    """Names of every hook defined here."""
    return sorted(
        name
        for name, value in globals().items()
        if name.startswith("backpackflow_") and callable(value)
    )


__all__: list[Any] = ["hook_names", "hookimpl", "hookspec"]
