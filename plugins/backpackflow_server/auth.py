"""Who is calling the API, and what they may do: API tokens, web UI sessions, roles.

**Tokens.** ``bpf_`` + 43 URL-safe characters (256 random bits from :mod:`secrets`), shown
once by ``backpackflow tokens create``. The run store keeps only their SHA-256 digest: a token
is looked up by the digest of what a client sends, an indexed equality query. A slow password
hash (bcrypt, argon2) buys nothing here -- it protects *guessable* secrets, and 256 random bits
are not guessable -- while it would cost every request tens of milliseconds. A checked token is
remembered for ``token_cache_seconds`` (so a revocation takes effect within that time).

**Roles**, each including the ones below it:

* ``viewer`` reads workflows, runs, traces and live streams;
* ``runner`` also starts and cancels runs;
* ``admin`` also creates, changes and deletes workflows -- a flow decides what the service
  executes, so editing one is the most trusted thing the API allows.

Tokens themselves are made and revoked by the operator (``backpackflow tokens``, which needs
the database), never over the API.

**Browsers.** ``EventSource`` cannot send an ``Authorization`` header, so the web page logs in
once with a token (``POST /api/session``) and gets an HttpOnly, ``SameSite=Strict`` session
cookie signed with itsdangerous (which Starlette uses for its own sessions), holding the
token's id and a CSRF token -- never the token. Requests authenticated by the cookie that
change something must send the CSRF token back in ``X-CSRF-Token``; the cookie follows the
token's fate (revoked or expired: the session ends too).

**Local-dev mode** (``auth = "local-dev"``): no token; every client on a loopback address is
an admin. ``serve`` refuses it on any other address, and requests from a non-loopback peer are
refused. The Host and Origin checks of :mod:`backpackflow_server.edge` still apply -- they are
what keeps a web page in the developer's browser from driving the open service.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from cachetools import TTLCache
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from backpackflow_store_sql import StoreError

from .credentials import hash_token
from .settings import Settings

log = logging.getLogger("backpackflow_server.auth")

Role = Literal["admin", "runner", "viewer"]
_RANK = {"viewer": 1, "runner": 2, "admin": 3}
SESSION_COOKIE = "backpackflow_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Seconds between two updates of a token's ``last_used_at`` (a write per request would not do).
TOUCH_INTERVAL = 60.0
#: What a client without credentials is told.
NEEDS_TOKEN = (
    "this API needs a token: send 'Authorization: Bearer <token>' (the operator creates one "
    "with 'backpackflow tokens create --role viewer'), or log in to the web page"
)


def is_loopback(address: str | None) -> bool:
    """Whether a peer address (``127.0.0.1``, ``::1``) is on this machine's loopback."""
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return address == "localhost"


class NotAuthenticated(Exception):
    """No valid credentials: 401 with ``WWW-Authenticate: Bearer``."""


class NotAllowed(Exception):
    """Valid credentials, but not for this: 403."""


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    role: Role
    via: Literal["bearer", "cookie", "local-dev"]
    token_id: str | None = None
    csrf_token: str | None = None

    def allows(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


LOCAL_DEV = Principal(name="local-dev", role="admin", via="local-dev")


class TokenStore(Protocol):
    """What authentication needs of the run store."""

    def find_token(
        self, *, token_hash: str | None = None, token_id: str | None = None
    ) -> dict[str, Any] | None: ...
    def touch_token(self, token_id: str, when: datetime | None = None) -> None: ...


class Authenticator:
    """Checks credentials against the store (with a short cache) and signs session cookies."""

    def __init__(self, store: TokenStore, settings: Settings) -> None:
        self._store = store
        self.local_dev = settings.auth == "local-dev"
        secret = (
            settings.session_secret.get_secret_value()
            if settings.session_secret is not None
            else secrets.token_urlsafe(32)
        )
        self._sessions = URLSafeTimedSerializer(secret, salt="backpackflow.session")
        self.session_max_age = settings.session_max_age
        ttl = settings.token_cache_seconds
        self._cache: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(maxsize=4096, ttl=ttl) if ttl > 0 else None
        )
        self._touched: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    # ------------------------------------------------------------------ tokens

    async def _token(self, key: str, lookup: Callable[[], dict[str, Any] | None]) -> Any:
        """The token record (``None``: unknown, revoked or expired), from the cache if fresh."""
        cache = self._cache
        record = cache.get(key) if cache is not None else None
        if record is None:
            # one look-up per token at a time: a burst of requests with a token the cache
            # does not hold (yet, or any more) waits for the same answer
            pending = self._pending.get(key)
            if pending is None:
                pending = asyncio.ensure_future(run_in_threadpool(self._look_up, lookup))
                self._pending[key] = pending
                pending.add_done_callback(lambda _: self._pending.pop(key, None))
            record = await asyncio.shield(pending)
            if record is None:
                return None
            if cache is not None:
                cache[key] = record
        expires = record["expires_at"]
        if expires is not None and datetime.fromisoformat(expires) <= datetime.now(UTC):
            return None
        return record

    def _look_up(self, lookup: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """In a worker thread: find the token, and note its use at most once a minute."""
        record = lookup()
        if record is None:
            return None
        now = time.monotonic()
        if now - self._touched.get(record["id"], -TOUCH_INTERVAL) >= TOUCH_INTERVAL:
            self._touched[record["id"]] = now
            try:
                self._store.touch_token(record["id"])
            except StoreError as exc:  # the request goes on; the next use tries again
                log.warning("cannot record the use of token %r: %s", record["name"], exc)
        return record

    async def from_token(self, token: str) -> Principal | None:
        digest = hash_token(token)
        record = await self._token("h" + digest, lambda: self._store.find_token(token_hash=digest))
        if record is None:
            return None
        return Principal(record["name"], record["role"], "bearer", record["id"])

    # ------------------------------------------------------------------ sessions

    def session_cookie(self, principal: Principal) -> tuple[str, str]:
        """(cookie value, CSRF token) of a new web UI session of ``principal``'s token."""
        csrf = secrets.token_urlsafe(24)
        return self._sessions.dumps({"t": principal.token_id, "c": csrf}), csrf

    async def from_session(self, cookie: str) -> Principal:
        try:
            data = self._sessions.loads(cookie, max_age=self.session_max_age)
        except SignatureExpired as exc:
            raise NotAuthenticated("the session has expired; log in again") from exc
        except BadSignature as exc:
            raise NotAuthenticated("the session cookie is not valid; log in again") from exc
        token_id, csrf = data.get("t"), data.get("c")
        if not isinstance(token_id, str) or not isinstance(csrf, str):
            raise NotAuthenticated("the session cookie is not valid; log in again")
        record = await self._token(
            "i" + token_id, lambda: self._store.find_token(token_id=token_id)
        )
        if record is None:
            raise NotAuthenticated("the session's token was revoked or has expired")
        return Principal(record["name"], record["role"], "cookie", record["id"], csrf)

    # ------------------------------------------------------------------ one request

    async def authenticate(
        self, request: Request, bearer: str | None, cookie: str | None
    ) -> Principal:
        if self.local_dev:
            peer = request.client.host if request.client is not None else None
            if not is_loopback(peer):
                raise NotAllowed("this service runs in local-dev mode: loopback clients only")
            return LOCAL_DEV
        if bearer is not None:
            principal = await self.from_token(bearer)
            if principal is None:
                raise NotAuthenticated("the token is unknown, revoked or expired")
            return principal
        if cookie:
            principal = await self.from_session(cookie)
            if request.method in UNSAFE_METHODS:
                sent = request.headers.get(CSRF_HEADER, "")
                if not hmac.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
                    raise NotAllowed(
                        f"a change made with the session cookie needs the {CSRF_HEADER} header "
                        "(its value comes with the session: GET /api/session)"
                    )
            return principal
        raise NotAuthenticated(NEEDS_TOKEN)


# ---------------------------------------------------------------------- FastAPI dependencies

#: The two ways to authenticate, as the OpenAPI spec describes them.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token: `Authorization: Bearer bpf_…` (`backpackflow tokens create "
    "--role admin|runner|viewer`). Roles: viewer reads, runner also starts and cancels runs, "
    "admin also edits workflows.",
)
session_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="The web page's session (`POST /api/session` with a token sets it: HttpOnly, "
    f"SameSite=Strict). Requests that change something also send `{CSRF_HEADER}` with the "
    "csrf_token of the session.",
)


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, cookie: str | None
) -> Principal:
    """The caller of this request (401 or 403 otherwise)."""
    authenticator: Authenticator = request.app.state.service.authenticator
    bearer = credentials.credentials if credentials is not None else None
    if bearer is None and request.headers.get("authorization") and not authenticator.local_dev:
        raise NotAuthenticated("use 'Authorization: Bearer <token>'")
    return await authenticator.authenticate(request, bearer, cookie)


def require(role: str) -> Any:
    """A dependency: the caller, who must hold ``role`` (or a higher one). It takes the two
    security schemes itself and calls :func:`authenticate` as a function: FastAPI solves
    every dependency of every request anew, and a level of them less is CPU saved on each."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        cookie: Annotated[str | None, Security(session_scheme)],
    ) -> Principal:
        principal = await authenticate(request, credentials, cookie)
        if not principal.allows(role):
            raise NotAllowed(
                f"this needs the {role} role; the token {principal.name!r} is a {principal.role}"
            )
        return principal

    check.__name__ = f"require_{role}"
    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Runner = Annotated[Principal, require("runner")]
Admin = Annotated[Principal, require("admin")]
