"""Separate hosts on one machine: Linux network namespaces joined by a bridge.

:class:`Hosts` makes one namespace per process (``bpf-<tag>-<name>``, with the address
``10.x.y.N`` on its ``eth0``) and a bridge in the root namespace (``10.x.y.1``): the root
namespace is the **services host**. PostgreSQL and Redis there listen on 127.0.0.1 only, so a
:class:`Forwarder` (asyncio, in a thread of the test process) listens on the bridge address
and forwards each connection to the real service. A process in a namespace has no loopback
route to anything of another: it reaches the services and the other processes through the
bridge only, as it would across a network.

Names, the tag and the ``/24`` are new for every use, so two test sessions at once (tox's
py3 and py3-lowest in CI) never share a link or an address. Needs root and iproute2
(``ip netns``); :func:`netns_unavailable` says why not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable

IP = shutil.which("ip") or next(
    (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.path.exists(p)), None
)


def netns_unavailable() -> str | None:
    """Why this machine cannot make network namespaces here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if IP is None:
        return "network namespaces need iproute2's ip command (ip netns)"
    name = f"bpf-probe-{secrets.token_hex(3)}"
    made = subprocess.run([IP, "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip()}"
    subprocess.run([IP, "netns", "delete", name], capture_output=True)
    return None


def _ip(*argv: str) -> None:
    assert IP is not None
    done = subprocess.run([IP, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A ``10.x.y.0/24`` no route of the root namespace overlaps (another session's bridge,
    the machine's own networks)."""
    assert IP is not None
    listed = subprocess.run([IP, "-j", "-4", "route", "show"], capture_output=True, text=True)
    taken = [
        ipaddress.ip_network(route["dst"], strict=False)
        for route in json.loads(listed.stdout or "[]")
        if route.get("dst", "default") != "default"
    ]
    for _ in range(100):
        subnet = ipaddress.IPv4Network(
            f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24"
        )
        if not any(subnet.overlaps(network) for network in taken):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 for the test network")


class Hosts:
    """Namespaces as hosts on one bridge; :meth:`close` removes all of it (also after a
    failed :meth:`add`). Use as a context manager."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.subnet = _free_subnet()
        self.bridge = f"bpf{self.tag}"  # interface names have at most 15 characters
        self.services = str(self.subnet[1])  # the root namespace's address on the bridge
        self.namespaces: dict[str, str] = {}  # name -> namespace
        self.addresses: dict[str, str] = {}  # name -> its address
        self._links: list[str] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.services}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def add(self, name: str) -> str:
        """A new host ``name``: its namespace, linked to the bridge; returns its address."""
        namespace = f"bpf-{self.tag}-{name}"
        link = f"{self.bridge}v{len(self.namespaces)}"
        address = str(self.subnet[10 + len(self.namespaces)])
        _ip("netns", "add", namespace)
        self.namespaces[name] = namespace
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self._links.append(link)
        _ip("link", "set", link, "master", self.bridge, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        self.addresses[name] = address
        return address

    def exec_prefix(self, name: str) -> list[str]:
        """The argv prefix that runs a command on host ``name`` (``ip netns exec`` execs the
        command in place: its process id is the command's, so signals reach it)."""
        assert IP is not None
        return [IP, "netns", "exec", self.namespaces[name]]

    def reaches(self, name: str, host: str, port: int) -> bool:
        """Whether a TCP connection from host ``name`` to ``host:port`` succeeds."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout=2).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        done = subprocess.run([*self.exec_prefix(name), sys.executable, "-c", probe], timeout=30)
        return done.returncode == 0

    def close(self) -> None:
        """Delete the namespaces (their ends of the links go with them), links and bridge;
        what is already gone is no error."""
        for namespace in self.namespaces.values():
            subprocess.run([IP or "ip", "netns", "delete", namespace], capture_output=True)
        for link in (*self._links, self.bridge):
            subprocess.run([IP or "ip", "link", "delete", link], capture_output=True)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Forwarder:
    """TCP forwarding from ``(listen host, port)`` to ``(target host, port)`` pairs, on an
    asyncio loop in a thread of its own: the services host's face on the test network."""

    def __init__(self, routes: Iterable[tuple[str, int, str, int]]) -> None:
        self._routes = list(routes)
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        except BaseException:
            self.close()
            raise

    async def _listen(self) -> None:
        for host, port, target_host, target_port in self._routes:

            async def accept(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                target: tuple[str, int] = (target_host, target_port),
            ) -> None:
                try:
                    upstream_reader, upstream_writer = await asyncio.open_connection(*target)
                except OSError:
                    writer.close()
                    return
                for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
                    task = asyncio.create_task(self._pipe(source, sink))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

            self._servers.append(await asyncio.start_server(accept, host, port))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy until either side closes, then close the sink (the other pipe then ends)."""
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
