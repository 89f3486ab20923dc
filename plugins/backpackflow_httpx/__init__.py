"""httpx transports that enforce an :class:`~backpackflow.policy.EgressPolicy` (a library the
first-party plugins that make network calls share; it registers nothing, so it has no entry point).

For every request the transport resolves the URL's host through the policy (which checks the
name and every address it resolves to) and then sends the request to the first checked address
itself: the URL's host is replaced by that address, while the ``Host`` header keeps the name
and TLS keeps it too (``sni_hostname``: the certificate is verified for the name). DNS is asked
once, by the policy, so a rebinding answer between check and connect cannot redirect the
connection, and nothing of the request (headers, body, a secret in the URL) leaves the process
for a denied destination. Redirects are checked hop by hop, as each one is a new request through
the transport; environment proxies are not used (a proxy would resolve names itself).

This package needs httpx, which the plugins that make network calls (``llm``, ``nodes``,
``webhook`` extras) install; the kernel keeps the policy (:mod:`backpackflow.policy.egress`) and
never imports httpx, nor this package.
"""

from __future__ import annotations

from typing import Any

import httpx

from backpackflow.policy import EgressPolicy

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pin(request: httpx.Request | Any, address: str) -> None:
    """Send ``request`` to ``address`` while it keeps naming its host (Host header, SNI).
    (Also an ``httpx2.Request``, which has the same URL and extensions API.)"""
    host = request.url.host
    if address == host:
        return
    request.extensions = {**request.extensions, "sni_hostname": host}
    request.url = request.url.copy_with(host=address)


def _port(request: httpx.Request) -> int:
    return request.url.port or _DEFAULT_PORTS.get(request.url.scheme, 80)


class EgressTransport(httpx.AsyncBaseTransport):
    """An async transport that only connects where ``policy`` allows (see the module
    docstring); other options go to the :class:`httpx.AsyncHTTPTransport` it wraps."""

    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        self.policy = policy
        self._inner = httpx.AsyncHTTPTransport(**options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await self.policy.resolve_async(request.url.host, _port(request))
        _pin(request, addresses[0])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class SyncEgressTransport(httpx.BaseTransport):
    """The synchronous :class:`EgressTransport` (for ``httpx.Client``)."""

    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        self.policy = policy
        self._inner = httpx.HTTPTransport(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        addresses = self.policy.resolve(request.url.host, _port(request))
        _pin(request, addresses[0])
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def async_client(policy: EgressPolicy | None, **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that obeys ``policy`` (``None``: a plain client)."""
    if policy is None:
        return httpx.AsyncClient(**options)
    options.pop("trust_env", None)  # proxies from the environment would bypass the policy
    return httpx.AsyncClient(transport=EgressTransport(policy), trust_env=False, **options)


def sync_client(policy: EgressPolicy | None, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` that obeys ``policy`` (``None``: a plain client)."""
    if policy is None:
        return httpx.Client(**options)
    options.pop("trust_env", None)  # proxies from the environment would bypass the policy
    return httpx.Client(transport=SyncEgressTransport(policy), trust_env=False, **options)


__all__ = ["EgressTransport", "SyncEgressTransport", "async_client", "sync_client"]
