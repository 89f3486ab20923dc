"""Runs on Celery workers: the ``celery`` executor, ``backpackflow worker`` and
``backpackflow workers`` (install with ``pip install "backpackflow[workers]"``).

``backpackflow serve --executor celery --broker redis://…`` stores each run ``queued`` and
sends its id to the broker instead of running it; ``backpackflow worker --broker redis://…
--database postgresql://…`` takes runs off the broker and drives many at once on one asyncio
loop, each under a lease with a fencing token in the run store (one driver per run; a stale
worker's writes are refused). Celery provides the queue, late acknowledgement and redelivery
when a worker dies; the lease and the checkpoints make a redelivered run go on from where it
was on another worker. See docs/deploy.md.
"""

from __future__ import annotations

from .app import QUEUE, TASK, make_celery

__all__ = ["QUEUE", "TASK", "make_celery"]
