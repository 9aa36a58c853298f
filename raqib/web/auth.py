"""API tokens and scopes for every route: `require_scope("read"|"admin")` is the dependency,
`verify_token(ctx, token)` the one check (the pages' login uses it with the same tokens).

Tokens are required when `web.listen` is not a loopback address (or `web.require_tokens`);
on loopback a request without a token is served as admin, and one that sends a token must
send a valid one. A session layer (the pages' login) may set `request.state.scope` to the
scope of a token it verified; that counts as the token."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request

from raqib.web.problems import Problem
from raqib.web.tokens import grants

Scope = Literal["read", "admin"]


def verify_token(ctx, token: str) -> Scope | None:
    """The scope a token grants, or None when it is unknown or revoked (blocks briefly on the
    web side's store thread; async code can `await ctx.db(ctx.verifier.check, ctx.store, t)`)."""
    return ctx.db_sync(ctx.verifier.check, ctx.store, token)  # type: ignore[return-value]


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header; None when there is no header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Problem(401, "Unauthorized", "the Authorization header must be `Bearer <token>`",
                      headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def scope_of(request: Request) -> str | None:
    """The scope this request carries (token or session), None when it carries none."""
    ctx = request.app.state.ctx
    token = bearer(request)
    if token is None:
        return getattr(request.state, "scope", None)
    scope = await ctx.db(ctx.verifier.check, ctx.store, token)
    if scope is None:
        raise Problem(401, "Unauthorized", "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
    return scope


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def from_another_site(request: Request) -> bool:
    """A browser sent this for a page of another origin (it names the page's origin, or
    says cross-site); curl and other clients send neither header."""
    if request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def require_scope(scope: Scope):
    async def dependency(request: Request) -> None:
        ctx = request.app.state.ctx
        have = await scope_of(request)
        if have is None:
            if not ctx.config.settings.web.tokens_required:
                # loopback: whoever can reach the port is the local user, but not a page of
                # another site open in their browser (it may send a write, "simple" requests
                # need no CORS permission)
                if request.method not in SAFE_METHODS and from_another_site(request):
                    raise Problem(403, "Forbidden", "a write sent by a page of another site needs an "
                                  "API token (`Authorization: Bearer <token>`)")
                return None
            raise Problem(401, "Unauthorized", "this server requires an API token: "
                          "send `Authorization: Bearer <token>` (create one with `raqib tokens create`)",
                          headers={"WWW-Authenticate": "Bearer"})
        if not grants(have, scope):
            raise Problem(403, "Forbidden", f"this needs a token with scope {scope!r}")
        return None

    return dependency
