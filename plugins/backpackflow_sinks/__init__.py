"""backpackflow_sinks: event sinks for ops teams and a terminal trace inspector.

Each module is a plugin of its own (entry points ``sink_console``, ``sink_file``,
``sink_webhook`` and ``inspect``), so a missing extra only disables the plugin that needs it:

* :mod:`.console` (extra ``console``: rich): a live, readable trace of a run;
* :mod:`.jsonl` (no extra): JSON Lines files, rotated, per run or shared, lock-safe;
* :mod:`.webhook` (extra ``webhook``: httpx): batched, signed HTTP POSTs from a background thread;
* :mod:`.inspect` (extra ``console``): ``backpackflow inspect FILE.jsonl``;
* :mod:`.trace` (no extra): reads what the file sink wrote (runs, steps, state at a commit).

This package imports neither rich nor httpx, so the file sink and the trace reader work without
the extras.
"""

from backpackflow_sinks._common import SinkConfigError

__all__ = ["SinkConfigError"]
