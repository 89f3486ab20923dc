"""The ``webhook`` sink: events POSTed in batches to an HTTP endpoint, never slowing the run.

``handle()`` serializes the event (``event.to_json()``, so lazy parts describe that moment) and
puts it on a **bounded queue**; that is all the flow ever waits for. A background thread takes
batches off the queue (``batch_size`` events, or whatever arrived within ``max_delay`` seconds of
the oldest one, or at once on ``run_end``) and POSTs ``{"events": [...]}`` as JSON.

Why a thread with a synchronous ``httpx.Client`` rather than an event loop: flows run both
without a loop (synchronous flows) and inside whatever loop the caller owns; a thread of our own
is independent of both and cannot be starved by a busy loop. One request is in flight at a time,
which keeps events in order; an asyncio loop in the thread would add a second handoff and buy no
concurrency we want.

Delivery: retried with exponential backoff (``backoff`` seconds, doubled per attempt, capped at
``max_backoff``, with jitter: each wait is drawn from [½, 1] of its nominal value) on connection
errors, timeouts, 5xx and 429, up to ``max_retries`` retries. A ``Retry-After`` header (seconds or
an HTTP date) on 429 or 503 replaces the computed wait, capped at ``max_backoff``. Any other
non-2xx answer (4xx: the endpoint rejects the data; a retry would not help) drops the batch.
When the queue is full the **oldest** queued event is dropped by default (``drop="oldest"``): what
happened last, ``error`` and ``run_end`` included, is what an alert needs; ``drop="newest"`` keeps
the beginning instead. Every lost event is counted by reason in the report.

Headers of every request: ``Content-Type: application/json``, ``X-Backpackflow-Batch`` (a batch
id, the same on every retry of that batch: receivers can deduplicate), ``X-Backpackflow-Attempt``
and, with a ``secret`` (or ``secret_env``, the name of an environment variable holding it)::

    X-Backpackflow-Timestamp: 1732180000          (unix seconds when this attempt was signed)
    X-Backpackflow-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>

The signature covers the timestamp and the exact body bytes; a receiver recomputes it over the
raw body it read, compares with ``hmac.compare_digest`` and rejects timestamps older than a few
minutes (replays).

``close(timeout)`` sends what is queued within ``timeout`` seconds (default ``close_timeout``):
requests made while closing get at most the time left, and if the endpoint still holds the
thread when time is up, close returns anyway, counting what was not confirmed as dropped
(``close_timeout``); the daemon thread ends on its own.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import math
import random
import sys
import threading
import time
from collections import deque
from typing import Any, Literal

import attrs
import httpx

from backpackflow import __version__, hookimpl
from backpackflow.events import BackpackEvent, StreamEventType
from backpackflow.ids import new_id
from backpackflow.plugins import EventSinkRegistrar
from backpackflow.policy import TRUSTED, EgressDenied, SandboxPolicy, SandboxViolation
from backpackflow_httpx import sync_client
from backpackflow_sinks._common import (
    OnceLog,
    SinkConfigError,
    check_choice,
    check_positive,
    check_type,
)

SINK = "webhook"
SIGNATURE_HEADER = "X-Backpackflow-Signature"
TIMESTAMP_HEADER = "X-Backpackflow-Timestamp"
BATCH_HEADER = "X-Backpackflow-Batch"
ATTEMPT_HEADER = "X-Backpackflow-Attempt"
DROP_REASONS = (
    "queue_full",
    "rejected",
    "retries_exhausted",
    "close_timeout",
    "unserializable",
    "after_close",
)
_RUN_END = StreamEventType.RUN_END
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)


@attrs.frozen(kw_only=True)
class WebhookOptions:
    """Options of the ``webhook`` sink (shorthand ``webhook:URL``)."""

    #: Where batches are POSTed (http or https).
    url: str
    #: HMAC-SHA256 key: adds the signature and timestamp headers.
    secret: str | None = None
    #: Name of an environment variable holding the secret (keeps it off command lines).
    secret_env: str | None = None
    #: Extra request headers (e.g. Authorization).
    headers: dict[str, str] = attrs.field(factory=dict)
    #: Seconds allowed to connect, send and for each read of the answer.
    timeout: float = 5.0
    #: Events per request.
    batch_size: int = 100
    #: Longest wait, in seconds, for a batch to fill before it is sent.
    max_delay: float = 1.0
    #: Events held while the endpoint is slow or down; beyond it events are dropped.
    max_queue: int = 10_000
    #: Which event a full queue drops: the oldest queued one or the new one.
    drop: Literal["oldest", "newest"] = "oldest"
    #: Retries of a batch after the first attempt.
    max_retries: int = 5
    #: First retry wait in seconds; doubles on every retry (with jitter).
    backoff: float = 0.5
    #: Longest wait between attempts, also for Retry-After.
    max_backoff: float = 30.0
    #: Seconds close() may take to send what is queued.
    close_timeout: float = 5.0
    #: Use HTTP(S)_PROXY / NO_PROXY and the system CA settings from the environment.
    trust_env: bool = True


class WebhookSink:
    """Batched, retried, optionally signed HTTP delivery (see the module docstring)."""

    def __init__(self, options: WebhookOptions, *, policy: SandboxPolicy | None = None) -> None:
        policy = policy if policy is not None else TRUSTED
        self.url = _validate_url(options.url)
        egress = policy.egress
        if egress is not None:  # a flow's sink: refuse what is denied whatever DNS says, now
            try:
                egress.check_url_statically(str(self.url), what=f"sink {SINK!r}")
            except EgressDenied as exc:
                raise SinkConfigError(SINK, "url", str(exc)) from None
        self._secret = _validate(options, policy)
        self.options = options
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, dict[str, Any]]] = deque()
        self._flush_now = False
        self._closing = False
        self._deadline = math.inf
        self._abandoned = threading.Event()  # close() gave up on the worker
        self._inflight = 0
        self._received = self._sent = self._batches = self._retried = self._failed = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._last_error: str | None = None
        self._report: dict[str, Any] | None = None
        self._log = OnceLog(SINK)
        # under an egress policy every connection is checked after DNS resolution and made to
        # the address checked (no proxies from the environment: they would resolve on their own)
        self._client = sync_client(
            egress,
            timeout=httpx.Timeout(options.timeout),
            headers={
                **options.headers,
                "Content-Type": "application/json",
                "User-Agent": f"backpackflow-webhook/{__version__}",
            },
            follow_redirects=False,
            trust_env=options.trust_env,
        )
        self._thread = threading.Thread(target=self._work, name="backpackflow-webhook", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- EventSink

    def handle(self, event: BackpackEvent) -> None:
        """Queue ``event`` for delivery; never blocks on the network and never raises."""
        try:
            data = event.to_json()
        except Exception as exc:  # noqa: BLE001 - a sink never breaks the run it observes
            with self._cond:
                self._dropped["unserializable"] += 1
            self._log.error("could not serialize an event", exc)
            return
        now = time.monotonic()
        with self._cond:
            if self._closing:
                self._dropped["after_close"] += 1
                return
            self._received += 1
            queue = self._queue
            if len(queue) >= self.options.max_queue:
                self._dropped["queue_full"] += 1
                if self.options.drop == "newest":
                    return
                queue.popleft()
            queue.append((now, data))
            if event.type is _RUN_END:
                self._flush_now = True
                self._cond.notify()
            elif len(queue) == 1 or len(queue) >= self.options.batch_size:
                self._cond.notify()

    @property
    def pending(self) -> int:
        """Events queued or in flight: how far delivery lags behind the run (for monitoring)."""
        with self._cond:
            return len(self._queue) + self._inflight

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Send what is queued within ``timeout`` seconds, stop the worker and return the
        report. Idempotent: later calls return the same report."""
        limit = self.options.close_timeout if timeout is None else max(0.0, timeout)
        with self._cond:
            if self._report is not None:
                return dict(self._report)
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + limit
            self._cond.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        with self._cond:
            if self._thread.is_alive():
                # the endpoint still holds the request made before close: stop counting on it
                self._abandoned.set()
                self._last_error = self._last_error or "close timed out waiting for the endpoint"
                self._cond.notify_all()
            leftover = len(self._queue) + self._inflight  # 0 unless abandoned (or crashed)
            if leftover:
                self._dropped["close_timeout"] += leftover
                self._failed += 1 if self._inflight else 0
                self._queue.clear()
                self._inflight = 0
            if self._report is None:
                self._report = {
                    "sink": SINK,
                    "url": _redacted(self.url),
                    "received": self._received,
                    "sent": self._sent,
                    "batches": self._batches,
                    "retried": self._retried,
                    "failed": self._failed,
                    "dropped": dict(self._dropped),
                    "last_error": self._last_error,
                }
            return dict(self._report)

    # -------------------------------------------------------------- the worker

    def _work(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._deliver(batch)
        except Exception as exc:  # noqa: BLE001 - reported, never raised into the interpreter
            self._log.error("the delivery thread failed", exc)
            with self._cond:
                self._last_error = f"delivery thread failed: {type(exc).__name__}: {exc}"
        finally:
            self._client.close()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Wait until a batch is due (full, old enough, flushed or closing) and take it."""
        options = self.options
        with self._cond:
            while True:
                if self._abandoned.is_set():
                    return None
                queue = self._queue
                if not queue:
                    if self._closing:
                        return None
                    self._flush_now = False
                    self._cond.wait()
                    continue
                if self._closing or self._flush_now or len(queue) >= options.batch_size:
                    break
                wait = queue[0][0] + options.max_delay - time.monotonic()
                if wait <= 0:
                    break
                self._cond.wait(wait)
            if self._closing and time.monotonic() >= self._deadline:
                self._dropped["close_timeout"] += len(queue)
                queue.clear()
                return None
            size = min(options.batch_size, len(queue))
            batch = [queue.popleft()[1] for _ in range(size)]
            if not queue:
                self._flush_now = False
            self._inflight = size
            return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """POST one batch until it is accepted, rejected, out of retries or out of time."""
        body = _ENCODER.encode({"events": batch}).encode("utf-8")
        batch_id = new_id()
        count = len(batch)
        attempt = 0
        while True:
            with self._cond:
                if self._abandoned.is_set():
                    return
                timeout = self.options.timeout
                if self._closing:
                    left = self._deadline - time.monotonic()
                    if left <= 0:
                        self._give_up(count, "close_timeout", None)
                        return
                    timeout = min(timeout, left)
                if attempt:
                    self._retried += 1
            outcome, wait, error = self._post(body, batch_id, attempt, timeout)
            with self._cond:
                if self._abandoned.is_set():
                    return
                if outcome == "sent":
                    self._sent += count
                    self._batches += 1
                    self._inflight = 0
                    return
                self._last_error = error
                if outcome == "rejected":
                    self._give_up(count, "rejected", error)
                    return
                attempt += 1
                if attempt > self.options.max_retries:
                    self._give_up(count, "retries_exhausted", error)
                    return
                if wait is None:
                    nominal = self.options.backoff * 2 ** (attempt - 1)
                    wait = min(self.options.max_backoff, nominal) * random.uniform(0.5, 1.0)
                resume = time.monotonic() + wait
                while not self._abandoned.is_set():
                    if self._closing and resume > self._deadline:
                        self._give_up(count, "close_timeout", error)
                        return
                    left = resume - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)  # close() wakes us to recheck the deadline

    def _give_up(self, count: int, reason: str, error: str | None) -> None:
        """Count a lost batch (lock held)."""
        self._dropped[reason] += count
        self._failed += 1
        self._inflight = 0
        if error is not None:
            self._log.warning(reason, f"dropped a batch of {count} events ({reason}): {error}")

    def _post(
        self, body: bytes, batch_id: str, attempt: int, timeout: float
    ) -> tuple[str, float | None, str | None]:
        """One attempt: ("sent" | "retry" | "rejected", Retry-After wait, error text)."""
        headers = {BATCH_HEADER: batch_id, ATTEMPT_HEADER: str(attempt + 1)}
        if self._secret is not None:
            stamp = str(int(time.time()))
            digest = hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256)
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = f"sha256={digest.hexdigest()}"
        try:
            response = self._client.post(self.url, content=body, headers=headers, timeout=timeout)
        except EgressDenied as exc:  # nothing was sent; a retry would be denied as well
            return "rejected", None, str(exc)
        except httpx.TimeoutException as exc:
            return "retry", None, f"timed out after {timeout:.3g} s ({type(exc).__name__})"
        except httpx.HTTPError as exc:  # connection refused or reset, protocol errors
            return "retry", None, f"{type(exc).__name__}: {exc}"
        code = response.status_code
        if 200 <= code < 300:
            return "sent", None, None
        error = f"HTTP {code} {response.reason_phrase}".rstrip()
        if code == 429 or code >= 500:
            return "retry", _retry_after(response, self.options.max_backoff), error
        return "rejected", None, error


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or an HTTP date), capped."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _redacted(url: httpx.URL) -> str:
    """The URL without credentials or query (tokens often live there), for reports and logs."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _validate_url(value: Any) -> httpx.URL:
    check_type(SINK, "url", value, str)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise SinkConfigError(SINK, "url", f"{value!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise SinkConfigError(SINK, "url", f"must be an http:// or https:// URL, got {value!r}")
    if not url.host:
        raise SinkConfigError(SINK, "url", f"{value!r} has no host")
    return url


def _validate(options: WebhookOptions, policy: SandboxPolicy) -> bytes | None:
    """Check the options; returns the signing key (``secret_env`` read through ``policy``)."""
    for name in ("timeout", "max_delay", "backoff", "max_backoff", "close_timeout"):
        check_positive(SINK, name, getattr(options, name), allow_zero=name != "timeout")
    for name in ("batch_size", "max_queue", "max_retries"):
        value = getattr(options, name)
        check_type(SINK, name, value, int)
        check_positive(SINK, name, value, allow_zero=name == "max_retries")
    check_choice(SINK, "drop", options.drop, ("oldest", "newest"))
    check_type(SINK, "trust_env", options.trust_env, bool)
    check_type(SINK, "headers", options.headers, dict)
    for key, value in options.headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SinkConfigError(SINK, "headers", f"names and values must be strings: {key!r}")
    if options.secret is not None and options.secret_env is not None:
        raise SinkConfigError(SINK, "secret_env", "give either 'secret' or 'secret_env', not both")
    secret = options.secret
    if options.secret_env is not None:
        check_type(SINK, "secret_env", options.secret_env, str)
        try:
            secret = policy.getenv(options.secret_env)
        except SandboxViolation as exc:
            raise SinkConfigError(SINK, "secret_env", str(exc)) from None
        if not secret:
            raise SinkConfigError(
                SINK, "secret_env", f"environment variable {options.secret_env!r} is not set"
            )
    if secret is None:
        return None
    check_type(SINK, "secret", secret, str)
    if not secret:
        raise SinkConfigError(SINK, "secret", "must not be empty")
    return secret.encode("utf-8")


@hookimpl
def backpackflow_register_event_sinks(register: EventSinkRegistrar) -> None:
    register(
        SINK,
        WebhookSink,
        options=WebhookOptions,
        shorthand="url",
        description="batched HTTP POSTs from a background thread, retried, optionally signed",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
