"""backpackflow.plugins: the plugin host: hookspecs, registration records, the registry, registrars
and the manager (entry points).

Re-exports only (the modules hold the code).
"""

from backpackflow.plugins.hookspecs import (
    PROJECT,
    hookimpl,
    hookspec,
)
from backpackflow.plugins.manager import (
    build_registry,
    get_registry,
    reset_registry,
)
from backpackflow.plugins.records import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    Command,
    ConditionLanguage,
    DependencyFactory,
    EventSink,
    Example,
    ExecutorType,
    LiveFeedType,
    Migration,
    NodeClass,
    NodeType,
    PluginInfo,
    RunStoreType,
    SinkType,
    ToolType,
)
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
    node_contract,
)
from backpackflow.plugins.registry import (
    Registry,
)

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISABLE_PLUGINS_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "Command",
    "CommandRegistrar",
    "ConditionLanguage",
    "ConditionLanguageRegistrar",
    "DependencyFactory",
    "DependencyFactoryRegistrar",
    "EventSink",
    "EventSinkRegistrar",
    "Example",
    "ExampleRegistrar",
    "ExecutorRegistrar",
    "ExecutorType",
    "LiveFeedRegistrar",
    "LiveFeedType",
    "Migration",
    "MigrationRegistrar",
    "NodeClass",
    "NodeType",
    "NodeTypeRegistrar",
    "PluginInfo",
    "Registry",
    "RunStoreRegistrar",
    "RunStoreType",
    "SinkType",
    "ToolRegistrar",
    "ToolType",
    "build_registry",
    "get_registry",
    "hookimpl",
    "hookspec",
    "node_contract",
    "reset_registry",
]
