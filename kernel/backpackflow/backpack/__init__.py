"""backpackflow.backpack: state: records, the commit log, access control, the Backpack, node views
and the JSON codec.

Re-exports only (the modules hold the code).
"""

from backpackflow.backpack._backpack import (
    Backpack,
    access_event,
)
from backpackflow.backpack._codec import (
    dump_commits,
)
from backpackflow.backpack.access import (
    Permissions,
)
from backpackflow.backpack.records import (
    FORMAT,
    FORMAT_VERSION,
    OPS,
    AccessRecord,
    BackpackItem,
    Change,
    Commit,
    Diff,
    Observer,
    Reporter,
    Snapshot,
    SnapshotRef,
    StateDelta,
    StateLike,
)
from backpackflow.backpack.view import (
    BackpackView,
    MappedView,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "OPS",
    "AccessRecord",
    "Backpack",
    "BackpackItem",
    "BackpackView",
    "Change",
    "Commit",
    "Diff",
    "MappedView",
    "Observer",
    "Permissions",
    "Reporter",
    "Snapshot",
    "SnapshotRef",
    "StateDelta",
    "StateLike",
    "access_event",
    "dump_commits",
]
