"""What authentication costs one API request: in-process, and over the socket side by side.

Run: python bench/service_auth.py [--requests 500] [--repeats 7] [--database sqlite|postgresql]

In-process: the service's own authentication (``Authenticator.authenticate``) of one request,
on the real store, with a bearer token (checked tokens remembered, and not), the session cookie
and local-dev mode: microseconds per call, without the noise of HTTP and scheduling.

Over the socket: three ``backpackflow serve`` processes (on their own databases) answer
``GET /api/runs/{id}`` (a run with its steps: one database read) over a keep-alive connection:

* ``local-dev``: no token (the baseline);
* ``bearer``: an ``Authorization: Bearer`` token, checked tokens remembered (the default
  ``token_cache_seconds`` = 5);
* ``bearer, no cache``: the same with ``token_cache_seconds`` = 0 (every request looks its token
  up by digest: a thread hop and an indexed read);
* ``cookie``: the web page's session cookie on the cached service (a signature check and the
  token looked up by id).

Each repeat times ``--requests`` sequential requests of every variant, taking turns every 20
requests, so a slow patch of the shared machine hits all of them alike; the figures are medians
over the repeats (with the range), and each variant's extra time per request is its median
difference from local-dev within the same repeat. (Separate processes on separate databases
differ by more than authentication costs; the in-process figures are the precise ones.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from service_load import PostgresDatabase, create_token, default_flow, start_service

#: Requests of one variant before the next variant's turn.
CHUNK = 20


@contextmanager
def service(
    database: str, *, local_dev: bool, cache_seconds: float | None = None
) -> Iterator[tuple[str, str | None]]:
    """(URL, admin token or None) of a running service; stopped afterwards."""
    token = None if local_dev else create_token(database)
    if cache_seconds is not None:
        os.environ["BACKPACKFLOW_TOKEN_CACHE_SECONDS"] = str(cache_seconds)
    try:
        process, url = start_service(database, 4, False, None, local_dev)
    finally:
        os.environ.pop("BACKPACKFLOW_TOKEN_CACHE_SECONDS", None)
    try:
        yield url, token
    finally:
        process.terminate()
        process.wait(30)


def finished_run(client: httpx.Client) -> str:
    created = client.post("/api/workflows", json={"name": "auth", "graph_json": default_flow(0)})
    created.raise_for_status()
    run = client.post(f"/api/workflows/{created.json()['id']}/runs", json={})
    run.raise_for_status()
    run_id = str(run.json()["id"])
    while client.get(f"/api/runs/{run_id}").json()["status"] != "succeeded":
        time.sleep(0.05)
    return run_id


def in_process(database: str, calls: int, repeats: int) -> dict[str, list[float]]:
    """Microseconds per ``Authenticator.authenticate`` call, per variant (medians input)."""
    import asyncio

    from starlette.requests import Request

    from backpackflow_server import Settings
    from backpackflow_server.auth import Authenticator
    from backpackflow_server.credentials import hash_token, new_token
    from backpackflow_store_sql import SqlRunStore

    store = SqlRunStore(database)
    store.upgrade()
    token = new_token()
    store.create_token(f"bench-{token[-6:]}", "admin", hash_token(token), hint="bench")

    def request(headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {"type": "http", "method": "GET", "headers": raw, "client": ("127.0.0.1", 1)}
        return Request(scope)

    async def measure() -> dict[str, list[float]]:
        cached = Authenticator(store, Settings(token_cache_seconds=5))
        uncached = Authenticator(store, Settings(token_cache_seconds=0))
        local = Authenticator(store, Settings(auth="local-dev"))
        principal = await cached.from_token(token)
        assert principal is not None
        cookie, _ = cached.session_cookie(principal)
        variants = {
            "local-dev": (local, None, None),
            "bearer": (cached, token, None),
            "bearer, no cache": (uncached, token, None),
            "cookie": (cached, None, cookie),
        }
        plain = request({})
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, (authenticator, bearer, session) in variants.items():
                started = time.perf_counter()
                for _ in range(calls):
                    await authenticator.authenticate(plain, bearer, session)
                results[name].append((time.perf_counter() - started) / calls * 1e6)
        return results

    try:
        return asyncio.run(measure())
    finally:
        store.close()


def per_request_us(client: httpx.Client, path: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
    return (time.perf_counter() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per variant, repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        postgres: list[PostgresDatabase] = []

        def database(name: str) -> str:
            if args.database == "sqlite":
                return f"sqlite:///{Path(tmp) / name}.db"
            made = PostgresDatabase()
            url = made.create()
            if url is None:
                raise SystemExit("PostgreSQL is unreachable")
            postgres.append(made)
            return url

        try:
            calls = in_process(database("in-process"), args.requests, args.repeats)
            with (
                service(database("dev"), local_dev=True) as (dev_url, _),
                service(database("cached"), local_dev=False) as (cached_url, token),
                service(database("uncached"), local_dev=False, cache_seconds=0) as (
                    uncached_url,
                    uncached_token,
                ),
            ):
                bearer = {"Authorization": f"Bearer {token}"}
                clients: dict[str, httpx.Client] = {
                    "local-dev": httpx.Client(base_url=dev_url),
                    "bearer": httpx.Client(base_url=cached_url, headers=bearer),
                    "bearer, no cache": httpx.Client(
                        base_url=uncached_url,
                        headers={"Authorization": f"Bearer {uncached_token}"},
                    ),
                    "cookie": httpx.Client(base_url=cached_url),
                }
                login = clients["cookie"].post("/api/session", json={"token": token})
                login.raise_for_status()
                paths: dict[Any, str] = {}
                for name, client in clients.items():
                    setup = client if name != "cookie" else clients["bearer"]
                    run_id = paths.get(setup.base_url) or finished_run(setup)
                    paths[setup.base_url] = run_id
                    per_request_us(client, f"/api/runs/{run_id}", 100)  # warm up
                timings: dict[str, list[float]] = {name: [] for name in clients}
                for _ in range(args.repeats):
                    spent = dict.fromkeys(clients, 0.0)
                    for _ in range(args.requests // CHUNK):  # take turns every CHUNK requests
                        for name, client in clients.items():
                            setup = client if name != "cookie" else clients["bearer"]
                            path = f"/api/runs/{paths[setup.base_url]}"
                            spent[name] += per_request_us(client, path, CHUNK)
                    for name in clients:
                        timings[name].append(spent[name] / (args.requests // CHUNK))
                for client in clients.values():
                    client.close()
        finally:
            for made in postgres:
                made.drop()
    print(f"Authenticator.authenticate in-process on {args.database}, medians (range):")
    for name, values in calls.items():
        low, high = min(values), max(values)
        print(f"  {name:<17} {statistics.median(values):7.1f} us ({low:.1f}-{high:.1f})")
    report(timings, args)
    return 0


def report(timings: dict[str, list[float]], args: Any) -> None:
    base = timings["local-dev"]
    print(
        f"GET /api/runs/{{id}} on {args.database}: {args.requests} requests x {args.repeats} "
        "repeats per variant, medians (range)"
    )
    for name, values in timings.items():
        extra = [value - dev for value, dev in zip(values, base, strict=True)]
        ratio = [value / dev for value, dev in zip(values, base, strict=True)]
        line = (
            f"  {name:<17} {statistics.median(values):7.0f} us/request "
            f"({min(values):.0f}-{max(values):.0f})"
        )
        if name != "local-dev":
            line += (
                f"   +{statistics.median(extra):5.0f} us ({min(extra):.0f} to {max(extra):.0f})"
                f"   x{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f})"
            )
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
