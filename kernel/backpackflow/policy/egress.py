"""Egress policy: which network addresses a flow may make the process connect to.

A flow names hosts (``http_fetch`` URLs, a webhook sink's URL, an LLM provider's ``base_url``);
the operator's :class:`EgressPolicy` decides, after DNS resolution, whether the addresses they
resolve to may be reached. By default every address that is not globally routable is denied:
loopback, link-local (``169.254.0.0/16`` with the cloud metadata services, ``fe80::/10``),
private (RFC 1918, ``fc00::/7``), shared (``100.64.0.0/10``), unspecified, reserved and
multicast ranges, and such addresses embedded in IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo,
NAT64). The operator may allow networks back (``allow_networks``), restrict reachable host
names (``allow_hosts``) and deny more (``deny_networks``); the service's own listening address
is always denied (``deny_endpoints``) unless the operator allows it.

A host name passes only if **every** address it resolves to passes, and the connection is then
made to one of the addresses that were checked (never resolved again): a DNS answer that
changes between the check and the connect (DNS rebinding) cannot redirect it.
the first-party plugins apply this to httpx clients with ``backpackflow_httpx`` (a plugin-side
library: the kernel never imports httpx).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from backpackflow.errors import BackpackFlowError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolver(host, port) -> addresses``: the policy's DNS lookup (tests inject their own).
Resolver = Callable[[str, int], Sequence[str]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
#: Where an operator changes what flows may reach (named in every refusal).
OPERATOR_HINT = (
    "the operator's egress policy (backpackflow serve --egress-allow, "
    "BACKPACKFLOW_EGRESS_ALLOW_NETWORKS / BACKPACKFLOW_EGRESS_ALLOW_HOSTS)"
)


class EgressDenied(BackpackFlowError, PermissionError):
    """The egress policy refuses a destination; the message names the host, the address and
    why, never anything sent to it."""


def parse_network(text: str) -> IPNetwork:
    """``"10.0.0.0/8"``, ``"127.0.0.1"`` (one address) or ``"::1"`` as a network; ValueError
    naming the text otherwise."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network (CIDR)") from None


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``patterns``: exact names (case-insensitive) or
    ``*.example.com`` (the domain and every name below it)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host == pattern[2:] or host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (``None``: it is one)."""
    for candidate in (_embedded_ipv4(address), address):  # what it really reaches first
        if candidate is None:
            continue
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address (cloud metadata services live there)"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_unspecified:
            return "the unspecified address (it reaches this host)"
        if candidate in _SHARED:
            return "a shared (carrier-grade NAT) address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "a reserved, non-public address"
    return None


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class EndpointSet:
    """(address, port) pairs learned while a service runs (the addresses it is reached on); a
    policy holding one sees every pair added later. Adding replaces an immutable tuple, so a
    check in another thread iterates a consistent snapshot."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[IPAddress, int]] = ()) -> None:
        self._items = tuple(items)

    def add(self, address: str | IPAddress, port: int) -> None:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if (ip, port) not in self._items:
            self._items = (*self._items, (ip, port))

    def __iter__(self) -> Iterator[tuple[IPAddress, int]]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"EndpointSet({[f'{a}:{p}' for a, p in self._items]})"


def _endpoints(value: Any) -> tuple[tuple[IPAddress, int], ...] | EndpointSet:
    return value if isinstance(value, EndpointSet) else tuple(value)


def _networks(value: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(value)


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@attrs.frozen(kw_only=True)
class EgressPolicy:
    """What a flow may connect to (see the module docstring). Immutable; the operator builds
    it (the service from its settings) and flows can only narrow it with their own lists."""

    #: Host names flows may reach (exact or ``*.example.com``); ``None``: any name whose
    #: addresses pass. IP literals in URLs are checked against the networks alone.
    allow_hosts: tuple[str, ...] | None = None
    #: Networks reachable although not public (``"10.1.2.0/24"``, ``"127.0.0.1/32"``).
    allow_networks: tuple[IPNetwork, ...] = attrs.field(default=(), converter=_networks)
    #: Networks denied although public.
    deny_networks: tuple[IPNetwork, ...] = attrs.field(default=(), converter=_networks)
    #: (address, port) pairs denied whatever the networks say: the service's own API (an
    #: :class:`EndpointSet` when they are learned while running).
    deny_endpoints: tuple[tuple[IPAddress, int], ...] | EndpointSet = attrs.field(
        default=(), converter=_endpoints
    )
    #: The DNS lookup (default: the system's, ``getaddrinfo``).
    resolver: Resolver | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_settings(
        cls,
        *,
        allow_networks: Iterable[str] = (),
        deny_networks: Iterable[str] = (),
        allow_hosts: Iterable[str] | None = None,
        deny_endpoints: Iterable[tuple[IPAddress, int]] | EndpointSet = (),
    ) -> EgressPolicy:
        """A policy from operator text: networks as ``"10.0.0.0/8"`` or ``"127.0.0.1"``, host
        patterns as ``"api.example.com"`` or ``"*.example.com"``. ValueError names a bad entry."""
        return cls(
            allow_hosts=tuple(h.strip() for h in allow_hosts) if allow_hosts is not None else None,
            allow_networks=tuple(parse_network(entry) for entry in allow_networks),
            deny_networks=tuple(parse_network(entry) for entry in deny_networks),
            deny_endpoints=_endpoints(deny_endpoints),
        )

    # -------------------------------------------------------------- checks

    def check_name(self, host: str, *, what: str = "a flow") -> None:
        """Refuse a host name the operator did not list (when it lists names)."""
        if self.allow_hosts is None or _ip_literal(host) is not None:
            return
        if not host_matches(host, self.allow_hosts):
            raise EgressDenied(
                f"{what} may not connect to {host!r}: it is not one of the hosts the operator "
                f"allows ({', '.join(self.allow_hosts) or 'none'}); see {OPERATOR_HINT}"
            )

    def check_address(self, address: str | IPAddress, port: int, *, host: str = "") -> None:
        """Refuse an address the policy denies; ``host`` names it in the message."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        shown = f"{host!r} ({ip})" if host and host != str(ip) else f"{ip}"
        for endpoint, endpoint_port in self.deny_endpoints:
            if endpoint_port == port and _same_address(ip, endpoint):
                raise EgressDenied(
                    f"connection to {shown} port {port} refused: it is this service's own address"
                )
        if any(_in_network(ip, net) for net in self.deny_networks):
            raise EgressDenied(
                f"connection to {shown} refused: the network is denied by {OPERATOR_HINT}"
            )
        if any(_in_network(ip, net) for net in self.allow_networks):
            return
        reason = _non_public_reason(ip)
        if reason is not None:
            raise EgressDenied(
                f"connection to {shown} refused: it is {reason}; flows may only reach public "
                f"addresses unless {OPERATOR_HINT} allows more"
            )

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` to connect to, every one checked; :class:`EgressDenied`
        if the name or any address it resolves to is denied (or it resolves to nothing)."""
        self.check_name(host)
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal, port, host=host)
            return [str(literal)]
        resolver = self.resolver or _system_resolver
        try:
            addresses = list(resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise EgressDenied(f"cannot resolve {host!r}: {exc}") from None
        return self._checked(host, port, addresses)

    async def resolve_async(self, host: str, port: int) -> list[str]:
        """:meth:`resolve` without blocking the event loop on DNS."""
        self.check_name(host)
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal, port, host=host)
            return [str(literal)]
        if self.resolver is not None:
            addresses = list(self.resolver(host, port))
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise EgressDenied(f"cannot resolve {host!r}: {exc}") from None
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return self._checked(host, port, addresses)

    def _checked(self, host: str, port: int, addresses: list[str]) -> list[str]:
        if not addresses:
            raise EgressDenied(f"cannot resolve {host!r}: no addresses")
        for address in addresses:  # every one: a name may not mix public and internal ones
            self.check_address(address.split("%", 1)[0], port, host=host)
        return addresses

    def check_url_statically(self, url: str, *, what: str) -> None:
        """Refuse, without DNS, a URL whose host is denied whatever DNS says (an IP literal or
        ``localhost``): lets a flow be refused when it is saved rather than when it runs."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return  # the owner of the URL reports it
        if not host:
            return
        self.check_name(host, what=what)
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal, port, host=host)
        elif host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
            self.check_address("127.0.0.1", port, host=host)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _in_network(ip: IPAddress, network: IPNetwork) -> bool:
    if ip.version != network.version:
        embedded = _embedded_ipv4(ip)
        return embedded is not None and embedded in network
    return ip in network


def _same_address(ip: IPAddress, endpoint: IPAddress) -> bool:
    if endpoint.is_unspecified:  # the service listens on every address: any local one
        return ip.is_loopback or ip.is_unspecified or _is_local_address(ip)
    embedded = _embedded_ipv4(ip)
    return ip == endpoint or (embedded is not None and embedded == endpoint)


def _is_local_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is an address of this host (best effort: its name's addresses)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return False
    return any(str(info[4][0]) == str(ip) for info in infos)


def self_endpoints(host: str, port: int) -> tuple[tuple[IPAddress, int], ...]:
    """The endpoints a service listening on ``host:port`` answers on (for ``deny_endpoints``)."""
    literal = _ip_literal(host)
    if literal is not None:
        return ((literal, port),)
    try:
        addresses = _system_resolver(host, port)
    except OSError:
        return ()
    return tuple((ipaddress.ip_address(a.split("%", 1)[0]), port) for a in addresses)


def describe(policy: EgressPolicy | None) -> dict[str, Any]:
    """The policy as JSON data (for logs and the service's start-up line)."""
    if policy is None:
        return {"egress": "unrestricted"}
    return {
        "allow_hosts": list(policy.allow_hosts) if policy.allow_hosts is not None else None,
        "allow_networks": [str(n) for n in policy.allow_networks],
        "deny_networks": [str(n) for n in policy.deny_networks],
        "deny_endpoints": [f"{a}:{p}" for a, p in policy.deny_endpoints],
    }


__all__ = [
    "EgressDenied",
    "EgressPolicy",
    "EndpointSet",
    "host_matches",
    "parse_network",
    "self_endpoints",
]
