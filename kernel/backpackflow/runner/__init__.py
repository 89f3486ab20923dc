"""backpackflow.runner: running flows: run context, the node lifecycle (the hot path), driving, node
classes, graphs and Flow, dependencies.

Re-exports only (the modules hold the code).
"""

from backpackflow.runner.base import (
    BaseNode,
    Condition,
    Edge,
    default_node_id,
    iter_nodes,
)
from backpackflow.runner.checkpoint import (
    DURABILITY_MODES,
    Checkpoint,
    Checkpointer,
    FileCheckpointer,
    MemoryCheckpointer,
    checkpoint_problem,
    decode_record,
    encode_records,
    fingerprint,
    fork_run,
)
from backpackflow.runner.context import (
    DEFAULT_MAX_STEPS,
    DEFAULT_STEPS_PER_NODE,
    DefaultMaxSteps,
    Limits,
    NodeFrame,
    RunControl,
    current_node,
    current_policy,
    current_run,
    current_run_or_none,
)
from backpackflow.runner.contracts import BoundContract, ContractViolation, bind_contract
from backpackflow.runner.deps import (
    BUILTIN_FACTORIES,
    BUILTIN_TYPES,
    DependencyContainer,
    DependencyNotFound,
)
from backpackflow.runner.flow import (
    AsyncBatchFlow,
    AsyncFlow,
    AsyncParallelBatchFlow,
    BatchFlow,
    Flow,
)
from backpackflow.runner.graph import FlowEndsWarning
from backpackflow.runner.inputs import INPUTS_WRITER, InputSpec, resolve_inputs
from backpackflow.runner.node import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    BatchNode,
    Node,
    ParallelBatchNode,
)
from backpackflow.runner.run import (
    Run,
    RunResult,
)

__all__ = [
    "BUILTIN_FACTORIES",
    "BUILTIN_TYPES",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_STEPS_PER_NODE",
    "DURABILITY_MODES",
    "INPUTS_WRITER",
    "AsyncBatchFlow",
    "AsyncBatchNode",
    "AsyncFlow",
    "AsyncNode",
    "AsyncParallelBatchFlow",
    "AsyncParallelBatchNode",
    "BaseNode",
    "BatchFlow",
    "BatchNode",
    "BoundContract",
    "Checkpoint",
    "Checkpointer",
    "Condition",
    "ContractViolation",
    "DefaultMaxSteps",
    "DependencyContainer",
    "DependencyNotFound",
    "Edge",
    "FileCheckpointer",
    "Flow",
    "FlowEndsWarning",
    "InputSpec",
    "Limits",
    "MemoryCheckpointer",
    "Node",
    "NodeFrame",
    "ParallelBatchNode",
    "Run",
    "RunControl",
    "RunResult",
    "bind_contract",
    "checkpoint_problem",
    "current_node",
    "current_policy",
    "current_run",
    "current_run_or_none",
    "decode_record",
    "default_node_id",
    "encode_records",
    "fingerprint",
    "fork_run",
    "iter_nodes",
    "resolve_inputs",
]
