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
)
from backpackflow.errors import (
    AccessDenied,
    BackpackError,
    BackpackFlowError,
    CommitEvicted,
    CommitNotFound,
    InvalidKey,
    InvalidNamespace,
    InvalidValue,
    KeyNotFound,
    SerializationError,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AccessRecord",
    "Backpack",
    "BackpackError",
    "BackpackFlowError",
    "BackpackItem",
    "BackpackView",
    "Change",
    "Commit",
    "CommitEvicted",
    "CommitNotFound",
    "Diff",
    "InvalidKey",
    "InvalidNamespace",
    "InvalidValue",
    "KeyNotFound",
    "Permissions",
    "SerializationError",
    "Snapshot",
    "__version__",
]
