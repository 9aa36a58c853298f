"""API tokens: created once and shown once, stored only as a SHA-256 hash.

A token is `raqib_<id>_<secret>` with 256 random bits of secret, so a plain SHA-256 of it
is enough (nothing to brute-force, no salt needed) and a lookup is one indexed query. The id
part lets `tokens list`/`revoke` name a token without ever showing it again."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.errors import ConfigError
from monitor.store import Store

SCOPES = ("read", "admin")
PREFIX = "raqib_"
USED_EVERY = 60.0  # seconds between last_used writes for one token (not one write per request)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def grants(have: str, want: str) -> bool:
    """admin can do everything read can."""
    return have == "admin" or have == want


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scope: str
    created: datetime
    last_used: datetime | None
    revoked: datetime | None

    def json(self) -> dict:
        iso = lambda d: d.isoformat(timespec="seconds") if d else None
        return {"id": self.id, "name": self.name, "scope": self.scope, "created": iso(self.created),
                "last_used": iso(self.last_used), "revoked": iso(self.revoked)}


def create(store: Store, scope: str, name: str = "") -> tuple[str, str]:
    """(id, token) of a new token; the token itself is not kept anywhere."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r} (read or admin)")
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ConfigError("a token name is at most 200 characters, without control characters")
    token_id = secrets.token_hex(4)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    store.token_add(token_id, name, scope, digest(token), time.time())
    return token_id, token


def listing(store: Store) -> list[TokenInfo]:
    ts = lambda v: datetime.fromtimestamp(v, UTC) if v else None
    return [TokenInfo(i, n, s, ts(c), ts(u), ts(r)) for i, n, s, c, u, r in store.token_rows()]


def revoke(store: Store, token_id: str) -> bool:
    return store.token_revoke(token_id, time.time())


class Verifier:
    """Checks tokens against the store; remembers when each was last recorded as used."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def check(self, store: Store, token: str) -> str | None:
        """The scope `token` grants, None when it is malformed, unknown or revoked."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        found = store.token_scope(digest(token))
        if found is None:
            return None
        token_id, scope = found
        now = time.time()
        if now - self._used.get(token_id, 0.0) > USED_EVERY:
            self._used[token_id] = now
            try:
                store.token_used(token_id, now)
            except Exception:  # a read-only replica: the check still stands
                pass
        return scope
