"""backpackflow: build, run and debug LLM agent flows.

The kernel owns three things: the Backpack (git-like, access-controlled state), the event bus and
the flow runner. Everything else is a plugin.
"""

from backpackflow.access import Permissions
from backpackflow.backpack import (
    AccessRecord,
    Backpack,
    BackpackItem,
    BackpackView,
    Change,
    Commit,
    Diff,
    Snapshot,
    SnapshotRef,
)
from backpackflow.config import EdgeConfig, FlowConfig, LimitsConfig, NodeConfig
from backpackflow.deps import DependencyContainer
from backpackflow.errors import (
    AccessDenied,
    BackpackError,
    BackpackFlowError,
    CommitEvicted,
    CommitNotFound,
    ConfigError,
    FlowError,
    GuardrailExceeded,
    InvalidKey,
    InvalidNamespace,
    InvalidValue,
    KeyNotFound,
    NodeDefinitionError,
    PluginError,
    RunCanceled,
    SerializationError,
)
from backpackflow.events import (
    BackpackEvent,
    EventStreamer,
    StreamEventType,
    Subscription,
)
from backpackflow.flow import AsyncBatchFlow, AsyncFlow, AsyncParallelBatchFlow, BatchFlow, Flow
from backpackflow.hookspecs import hookimpl
from backpackflow.loader import FlowLoader, ValidationReport, load_flow
from backpackflow.node import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    BaseNode,
    BatchNode,
    Edge,
    Node,
    ParallelBatchNode,
)
from backpackflow.run import (
    Limits,
    NodeFrame,
    Run,
    RunControl,
    RunResult,
    current_node,
    current_run,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AccessRecord",
    "AsyncBatchFlow",
    "AsyncBatchNode",
    "AsyncFlow",
    "AsyncNode",
    "AsyncParallelBatchFlow",
    "AsyncParallelBatchNode",
    "Backpack",
    "BackpackError",
    "BackpackEvent",
    "BackpackFlowError",
    "BackpackItem",
    "BackpackView",
    "BaseNode",
    "BatchFlow",
    "BatchNode",
    "Change",
    "Commit",
    "CommitEvicted",
    "CommitNotFound",
    "ConfigError",
    "DependencyContainer",
    "Diff",
    "Edge",
    "EdgeConfig",
    "EventStreamer",
    "Flow",
    "FlowConfig",
    "FlowError",
    "FlowLoader",
    "GuardrailExceeded",
    "InvalidKey",
    "InvalidNamespace",
    "InvalidValue",
    "KeyNotFound",
    "Limits",
    "LimitsConfig",
    "Node",
    "NodeConfig",
    "NodeDefinitionError",
    "NodeFrame",
    "ParallelBatchNode",
    "Permissions",
    "PluginError",
    "Run",
    "RunCanceled",
    "RunControl",
    "RunResult",
    "SerializationError",
    "Snapshot",
    "SnapshotRef",
    "StreamEventType",
    "Subscription",
    "ValidationReport",
    "__version__",
    "current_node",
    "current_run",
    "hookimpl",
    "load_flow",
]
