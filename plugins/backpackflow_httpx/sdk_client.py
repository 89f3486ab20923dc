"""The egress-checked transport for ``httpx2``, the httpx fork the official LLM SDKs
(``openai``, ``anthropic``) send their requests with.

The SDKs take an ``http_client=`` of their own httpx flavour; this module gives them one whose
transport obeys the run's :class:`~backpackflow.policy.EgressPolicy` exactly as
:class:`backpackflow_httpx.EgressTransport` does for httpx (one DNS answer, checked, then
connected to; ``Host`` and SNI keep the name; no environment proxies). ``httpx2`` is installed
with the SDKs (the ``llm`` extra), so only the LLM providers import this module.
"""

from __future__ import annotations

from typing import Any

import httpx2

from backpackflow.policy import EgressPolicy
from backpackflow_httpx import _DEFAULT_PORTS, _pin  # the same pinning, on httpx2's Request


class SDKEgressTransport(httpx2.AsyncBaseTransport):
    """An async httpx2 transport that only connects where ``policy`` allows."""

    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        self.policy = policy
        self._inner = httpx2.AsyncHTTPTransport(**options)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = request.url.port or _DEFAULT_PORTS.get(request.url.scheme, 80)
        addresses = await self.policy.resolve_async(request.url.host, port)
        _pin(request, addresses[0])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def sdk_async_client(policy: EgressPolicy | None, **options: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` for an SDK's ``http_client=`` that obeys ``policy``
    (``None``: a plain client)."""
    if policy is None:
        return httpx2.AsyncClient(**options)
    options.pop("trust_env", None)  # proxies from the environment would bypass the policy
    return httpx2.AsyncClient(transport=SDKEgressTransport(policy), trust_env=False, **options)


__all__ = ["SDKEgressTransport", "sdk_async_client"]
