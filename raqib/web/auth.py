"""API tokens and scopes. PLACEHOLDER (allows everything) until the API helper lands tokens:
`require_scope("read"|"admin")` is the dependency every route uses; `verify_token` checks one."""

from __future__ import annotations

from typing import Literal

from fastapi import Request

Scope = Literal["read", "admin"]


def verify_token(ctx, token: str) -> Scope | None:
    """The scope a token grants, or None when it is unknown or revoked."""
    return None


def require_scope(scope: Scope):
    async def dependency(request: Request) -> None:
        return None

    return dependency
