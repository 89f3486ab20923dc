"""API token secrets: how a token is made, stored (its digest) and shown (its hint).

Kept apart from :mod:`.auth` (which needs the web stack) because ``backpackflow tokens`` uses
them and every CLI start registers that command: importing FastAPI and SQLAlchemy there cost
~0.9 s on every ``backpackflow`` invocation.
"""

from __future__ import annotations

import hashlib
import secrets

#: The roles a token may have (viewer < runner < admin); the run store's ``api_tokens.role``
#: check constraint allows exactly these (a test holds the two equal).
ROLES = ("admin", "runner", "viewer")
TOKEN_PREFIX = "bpf_"


def new_token() -> str:
    """A new API token secret: ``bpf_`` and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 digest (hex) a token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_hint(token: str) -> str:
    """The first characters of a token, for listings (``bpf_Ab3x``): 24 of its 256 bits."""
    return token[: len(TOKEN_PREFIX) + 4]
