"""backpackflow.loader: flow configs into flows and back: schema composition, checks, load, build,
export, conditions.

Re-exports only (the modules hold the code).
"""

from backpackflow.loader.conditions import (
    OBJECT_LANGUAGE,
    STRING_LANGUAGE,
    CompiledCondition,
    compile_condition,
)
from backpackflow.loader.load import (
    FLOW_DIR,
    ConfigSource,
    ConfigWarning,
    FlowLoader,
    ValidationReport,
    load_flow,
    prepare_inputs,
)
from backpackflow.loader.schema import (
    SCHEMA_DIALECT,
    SCHEMA_ID,
    dumps_schema,
    export_schema,
    flow_schema,
    shipped_schema_path,
    validate_flow_document,
)

__all__ = [
    "FLOW_DIR",
    "OBJECT_LANGUAGE",
    "SCHEMA_DIALECT",
    "SCHEMA_ID",
    "STRING_LANGUAGE",
    "CompiledCondition",
    "ConfigSource",
    "ConfigWarning",
    "FlowLoader",
    "ValidationReport",
    "compile_condition",
    "dumps_schema",
    "export_schema",
    "flow_schema",
    "load_flow",
    "prepare_inputs",
    "shipped_schema_path",
    "validate_flow_document",
]
