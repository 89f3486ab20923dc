"""The node classes of PocketFlow: ``Node`` (retries, wait, fallback), batch and async nodes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from backpackflow.config import NodeConfig, RetryConfig
from backpackflow.errors import InvalidNodeSetting
from backpackflow.runner.base import BaseNode
from backpackflow.runner.lifecycle import _exec_with_retries

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.backpack import BackpackView
    from backpackflow.runner.run import Run


class Node(BaseNode):
    """A synchronous node. ``max_retries`` attempts of ``exec`` with ``wait`` seconds between
    them (multiplied by ``backoff`` after each failure, capped at ``max_wait``); then
    ``exec_fallback``. ``blocking=True`` runs ``exec`` in a worker thread when the flow runs in
    an event loop, so it does not stall concurrent runs."""

    def __init__(
        self,
        max_retries: int = 1,
        wait: float = 0,
        *,
        backoff: float = 1.0,
        max_wait: float | None = None,
        blocking: bool = False,
        id: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(id=id, name=name, namespace=namespace, params=params)
        if type(max_retries) is not int or max_retries < 1:
            raise InvalidNodeSetting(
                f"node {self.id!r}: max_retries must be an int >= 1, got {max_retries!r}"
            )
        if wait < 0 or backoff < 1 or (max_wait is not None and max_wait < 0):
            raise InvalidNodeSetting(
                f"node {self.id!r}: wait and max_wait must be >= 0 and backoff >= 1, got "
                f"wait={wait!r}, backoff={backoff!r}, max_wait={max_wait!r}"
            )
        self.max_retries = max_retries
        self.wait = wait
        self.backoff = backoff
        self.max_wait = max_wait
        self.blocking = blocking
        self.cur_retry = 0

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        """Called when every attempt failed; the default re-raises the last error."""
        raise exc

    @classmethod
    def _retry_kwargs(cls, config: NodeConfig) -> dict[str, Any]:
        retry = config.retry
        if retry is None:
            return {}
        return {
            "max_retries": retry.max_retries,
            "wait": retry.wait,
            "backoff": retry.backoff,
            "max_wait": retry.max_wait,
        }

    def _retry_config(self) -> RetryConfig | None:
        retry: RetryConfig | None = getattr(self, "retry_config", None)
        if retry is None and (
            self.max_retries != 1 or self.wait or self.backoff != 1.0 or self.max_wait is not None
        ):
            retry = RetryConfig(
                max_retries=self.max_retries,
                wait=self.wait,
                backoff=self.backoff,
                max_wait=self.max_wait,
            )
        return retry

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        delay = self.wait * self.backoff ** (attempt - 1)
        return delay if self.max_wait is None else min(delay, self.max_wait)


class BatchNode(Node):
    """``prep`` returns an iterable; ``exec`` runs once per item (with retries per item) and the
    results, in order, go to ``post``."""

    parallel: ClassVar[bool] = False

    async def _exec_phase(self, run: Run, prep_res: Any, namespace: str | None) -> tuple[Any, int]:
        items = list(prep_res or ())
        if self.parallel and not run.loopless:
            outcomes = await asyncio.gather(
                *(_exec_with_retries(run, self, item, threaded=not self.is_async) for item in items)
            )
        else:
            outcomes = [await _exec_with_retries(run, self, item) for item in items]
        return [o[0] for o in outcomes], sum(o[1] for o in outcomes)

    def _needs_loop(self) -> bool:
        return self.is_async or self.parallel


class ParallelBatchNode(BatchNode):
    """A batch node whose items run concurrently (sync ``exec`` in worker threads)."""

    parallel = True


class AsyncNode(Node):
    """A node with ``prep_async``/``exec_async``/``exec_fallback_async``/``post_async``."""

    is_async = True

    async def prep_async(self, backpack: BackpackView) -> Any:
        return None

    async def exec_async(self, prep_res: Any) -> Any:
        return None

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    async def post_async(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        return None


class AsyncBatchNode(AsyncNode, BatchNode):
    """Async batch node: items one after another."""


class AsyncParallelBatchNode(AsyncNode, BatchNode):
    """Async batch node: items concurrently (``asyncio.gather``)."""

    parallel = True
