"""backpackflow.config: flows as data, pure: the attrs config model, cattrs converters, params <->
JSON Schema, ``${ENV}`` references.

Re-exports only (the modules hold the code).
"""

from backpackflow.config.envrefs import (
    EnvRefs,
    KeepUnset,
    env_ref_paths,
    escape_literal_refs,
    has_env_refs,
    resolve_env_refs,
    restore_env_refs,
)
from backpackflow.config.model import (
    CURRENT_VERSION,
    FLOW_NODE_TYPE,
    DependencyConfig,
    EdgeConfig,
    FlowConfig,
    InputConfig,
    LimitsConfig,
    NodeConfig,
    RetryConfig,
    SinkConfig,
    SubflowParams,
    converter,
    structure,
    unstructure,
)
from backpackflow.config.params import (
    RedactedParams,
    check_params_instance,
    describe,
    format_error,
    params_converter,
    params_schema,
    params_schema_components,
    sorted_errors,
    structure_params,
    unstructure_params,
    validate_params,
)

__all__ = [
    "CURRENT_VERSION",
    "FLOW_NODE_TYPE",
    "DependencyConfig",
    "EdgeConfig",
    "EnvRefs",
    "FlowConfig",
    "InputConfig",
    "KeepUnset",
    "LimitsConfig",
    "NodeConfig",
    "RedactedParams",
    "RetryConfig",
    "SinkConfig",
    "SubflowParams",
    "check_params_instance",
    "converter",
    "describe",
    "env_ref_paths",
    "escape_literal_refs",
    "format_error",
    "has_env_refs",
    "params_converter",
    "params_schema",
    "params_schema_components",
    "resolve_env_refs",
    "restore_env_refs",
    "sorted_errors",
    "structure",
    "structure_params",
    "unstructure",
    "unstructure_params",
    "validate_params",
]
