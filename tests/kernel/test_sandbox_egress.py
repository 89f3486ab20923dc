"""The egress policy: which addresses a flow may make the process connect to, checked after DNS
resolution, and the httpx transports that connect only to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import httpx
import pytest

from backpackflow.policy import EgressDenied, EgressPolicy, EndpointSet, host_matches
from backpackflow_httpx import EgressTransport, _pin, async_client, sync_client
from loopback import RecordingServer, keep_requests_local

DENIED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("fe80::1", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("100.100.100.200", "shared"),  # a metadata service inside 100.64/10
    ("fc00::1", "private"),
    ("fd00:ec2::254", "private"),  # the IPv6 metadata service
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("192.0.2.1", "private"),  # documentation range (the ipaddress module says private)
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"]


@pytest.mark.parametrize(("address", "kind"), DENIED)
def test_non_public_addresses_are_denied_by_default(address: str, kind: str) -> None:
    with pytest.raises(EgressDenied, match=kind):
        EgressPolicy().check_address(address, 80)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    EgressPolicy().check_address(address, 443)


def test_the_operator_allows_networks_back_and_nothing_else() -> None:
    policy = EgressPolicy.from_settings(allow_networks=["127.0.0.1", "10.1.0.0/16"])
    policy.check_address("127.0.0.1", 80)
    policy.check_address("10.1.200.3", 80)
    policy.check_address("::ffff:127.0.0.1", 80)  # the same address, mapped
    for other in ("127.0.0.2", "10.2.0.1", "169.254.169.254"):
        with pytest.raises(EgressDenied):
            policy.check_address(other, 80)


def test_denied_networks_apply_to_public_addresses() -> None:
    policy = EgressPolicy.from_settings(deny_networks=["93.184.216.0/24"])
    with pytest.raises(EgressDenied, match="network is denied"):
        policy.check_address("93.184.216.34", 80)
    policy.check_address("8.8.8.8", 80)


def test_the_services_own_endpoint_is_denied_even_in_an_allowed_network() -> None:
    own = EndpointSet()
    policy = EgressPolicy.from_settings(allow_networks=["127.0.0.0/8"], deny_endpoints=own)
    policy.check_address("127.0.0.1", 8000)
    own.add("127.0.0.1", 8000)  # learned while the service runs: the policy sees it
    with pytest.raises(EgressDenied, match="this service's own address"):
        policy.check_address("127.0.0.1", 8000)
    with pytest.raises(EgressDenied, match="own address"):
        policy.check_address("::ffff:127.0.0.1", 8000)
    policy.check_address("127.0.0.1", 8001)


def test_a_name_passes_only_if_every_address_it_resolves_to_passes() -> None:
    answers = {"mixed.test": ["93.184.216.34", "10.0.0.7"], "public.test": ["93.184.216.34"]}
    policy = EgressPolicy(resolver=lambda host, port: answers[host])
    assert policy.resolve("public.test", 443) == ["93.184.216.34"]
    with pytest.raises(EgressDenied, match=r"'mixed.test' \(10.0.0.7\).*private"):
        policy.resolve("mixed.test", 443)


def test_a_name_that_does_not_resolve_is_denied() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(EgressDenied, match=r"cannot resolve 'nowhere\.test'"):
        EgressPolicy(resolver=fails).resolve("nowhere.test", 80)
    with pytest.raises(EgressDenied, match="no addresses"):
        EgressPolicy(resolver=lambda host, port: []).resolve("empty.test", 80)


def test_localhost_resolves_to_loopback_and_is_denied() -> None:
    with pytest.raises(EgressDenied, match="loopback"):
        EgressPolicy().resolve("localhost", 80)


def test_allowed_host_names_narrow_what_passes() -> None:
    policy = EgressPolicy(
        allow_hosts=("api.example.com", "*.corp.example"),
        resolver=lambda host, port: ["93.184.216.34"],
    )
    policy.resolve("api.example.com", 443)
    policy.resolve("x.corp.example", 443)
    policy.resolve("corp.example", 443)
    with pytest.raises(EgressDenied, match="not one of the hosts the operator allows"):
        policy.resolve("evil.example.com", 443)
    with pytest.raises(EgressDenied, match="not one of the hosts"):
        policy.resolve("notcorp.example", 443)


def test_host_patterns() -> None:
    assert host_matches("API.Example.com.", ["api.example.com"])
    assert host_matches("a.b.example.com", ["*.example.com"])
    assert not host_matches("badexample.com", ["*.example.com"])
    assert not host_matches("example.com.evil", ["example.com"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api",
        "http://[::1]/",
        "http://localhost/x",
        "http://api.localhost/",
        "https://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_urls_denied_whatever_dns_says_are_refused_statically(url: str) -> None:
    with pytest.raises(EgressDenied):
        EgressPolicy().check_url_statically(url, what="sink 'webhook'")


def test_a_url_with_a_name_waits_for_dns() -> None:
    EgressPolicy().check_url_statically("https://hooks.example.com/x", what="sink")


def test_settings_entries_are_checked() -> None:
    with pytest.raises(ValueError, match="'not a network' is not an IP address or network"):
        EgressPolicy.from_settings(allow_networks=["not a network"])


# ------------------------------------------------------------------------------ transports


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingServer]:
    keep_requests_local(monkeypatch)
    with RecordingServer() as server:
        yield server


class _CountingResolver:
    """DNS whose answer changes after the first question (a rebinding attacker's server)."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.questions = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.questions += 1
        return [self.answers[min(self.questions, 2) - 1]]


def test_the_connection_goes_to_the_address_checked_and_keeps_the_host_name(
    recorder: RecordingServer,
) -> None:
    # the name resolves to an allowed address once, and to a denied one if asked again: the
    # transport asks once and connects there, so rebinding between check and connect is moot
    dns = _CountingResolver("127.0.0.1", "169.254.169.254")
    policy = EgressPolicy.from_settings(allow_networks=["127.0.0.1"])
    policy = EgressPolicy(allow_networks=policy.allow_networks, resolver=dns)
    with sync_client(policy) as client:
        response = client.get(f"http://rebind.test:{recorder.port}/x")
    assert response.status_code == 200
    assert dns.questions == 1
    assert recorder.requests[0][1]["host"] == f"rebind.test:{recorder.port}"


def test_the_async_transport_pins_the_address_too(recorder: RecordingServer) -> None:
    dns = _CountingResolver("127.0.0.1", "10.0.0.1")
    allowed = EgressPolicy.from_settings(allow_networks=["127.0.0.1"]).allow_networks

    async def fetch() -> httpx.Response:
        async with async_client(EgressPolicy(allow_networks=allowed, resolver=dns)) as client:
            return await client.get(f"http://rebind.test:{recorder.port}/x")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert dns.questions == 1
    assert recorder.requests[0][1]["host"] == f"rebind.test:{recorder.port}"


def test_nothing_is_sent_to_a_denied_address(recorder: RecordingServer) -> None:
    with sync_client(EgressPolicy()) as client, pytest.raises(EgressDenied, match="loopback"):
        client.get(f"{recorder.url}/x", headers={"Authorization": "Bearer s3cret-token"})
    assert recorder.requests == []


def test_the_async_client_sends_nothing_to_a_denied_name(recorder: RecordingServer) -> None:
    async def fetch() -> None:
        async with async_client(EgressPolicy()) as client:
            await client.get(f"http://localhost:{recorder.port}/?key=s3cret")

    with pytest.raises(EgressDenied, match=r"'localhost' \(127\.0\.0\.1\)"):
        asyncio.run(fetch())
    assert recorder.requests == []


def test_every_redirect_hop_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_requests_local(monkeypatch)
    with RecordingServer() as inner:
        # the allowed server sends the client on to another loopback address
        target = f"http://127.0.0.2:{inner.port}/internal"
        with RecordingServer(redirect=target) as outer:
            policy = EgressPolicy.from_settings(allow_networks=["127.0.0.1"])
            with (
                sync_client(policy, follow_redirects=True) as client,
                pytest.raises(EgressDenied, match=r"127\.0\.0\.2"),
            ):
                client.get(f"{outer.url}/start")
            assert len(outer.requests) == 1
    assert inner.requests == []


def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    client = sync_client(EgressPolicy(), trust_env=True)
    assert client.trust_env is False
    client.close()


def test_pinning_keeps_the_name_for_tls() -> None:
    request = httpx.Request("GET", "https://api.example.com:8443/v1?x=1")
    _pin(request, "93.184.216.34")
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.url.query == b"x=1"
    assert request.extensions["sni_hostname"] == "api.example.com"  # certificate checked for it
    assert request.headers["host"] == "api.example.com:8443"
    ipv6 = httpx.Request("GET", "http://h.example/")
    _pin(ipv6, "2606:4700:4700::1111")
    assert ipaddress.ip_address(ipv6.url.host) == ipaddress.ip_address("2606:4700:4700::1111")


def test_the_transport_is_usable_directly() -> None:
    transport = EgressTransport(EgressPolicy())
    assert transport.policy.allow_networks == ()
