"""The Celery app the API (sending) and the workers (executing) share.

Everything that makes a dead worker lose nothing is Celery's own configuration, not code of
ours: ``task_acks_late`` (a run's message is acknowledged when the run has ended, not when a
worker took it), ``task_reject_on_worker_lost`` (a task whose executor died is not
acknowledged either), ``worker_prefetch_multiplier=1`` (a worker reserves no more runs than it
executes, so a worker's death strands no queued ones) and the Redis transport's
``visibility_timeout`` (how long an unacknowledged message waits before the broker hands it to
another worker; RabbitMQ redelivers as soon as the dead worker's connection closes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery

#: The task the API sends per run: ``backpackflow.run(run_id, answer=...)``.
TASK = "backpackflow.run"
#: The queue runs wait in (the ``broker_queue`` setting).
QUEUE = "backpackflow"


def make_celery(
    broker_url: str, *, visibility_timeout: float = 3600.0, queue: str = QUEUE
) -> Celery:
    """A Celery app on ``broker_url`` (``redis://`` or ``amqp://``) configured for runs, which
    wait in ``queue`` (``app.conf.task_default_queue``)."""
    app = Celery("backpackflow", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results are in the run store
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # sweep for messages past the visibility timeout every few seconds (kombu's
            # defaults sweep every 10 x 10 s): a dead worker's runs come back within about
            # visibility_timeout + this, not a minute and a half later
            "unacked_restore_interval": max(1, min(10, int(visibility_timeout / 2))),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # runs are long: a worker that loses the broker keeps driving them (their lease
        # decides who writes), instead of Celery cancelling every one it holds
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def redacted(url: str) -> str:
    """``url`` without its password (for logs and ``describe``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def queue_depth(app: Celery) -> int:
    """Runs waiting in the broker's queue (not yet taken by a worker)."""
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        try:
            queue = app.conf.task_default_queue
            declared: Any = channel.queue_declare(queue=queue, passive=True)
        except Exception:  # noqa: BLE001 - no such queue yet (Redis drops an empty one)
            return 0
        return int(declared.message_count)
