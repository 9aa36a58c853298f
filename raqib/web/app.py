"""Builds the FastAPI app from a WebContext: API routers, pages, errors as problem JSON,
strict security headers, and the OpenAPI docs served from vendored files (no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from raqib import __version__
from raqib.web import api, api_sources, feeds_out, ops, pages, problems
from raqib.web.auth import require_scope
from raqib.web.context import WebContext, ctx_of  # noqa: F401  (ctx_of: routers import it here)

STATIC = Path(__file__).parent / "static"

# No inline script, nothing from another host, never framed. Styles may be set by script
# through the CSSOM (Swagger UI does) but not by inline <style> or style="" in markup.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set its own (plain ASGI: no
    per-request task and stream as in Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in self.headers if k not in have]
            await send(message)

        return await self.app(scope, receive, with_headers)


# The largest body a route takes: POST /api/v1/topics/tag's 2,000,000 characters of text, as
# JSON (Arabic is 2 bytes a character, more when escaped). Without a cap a client could make the
# server hold (JSON) or spool to disk (multipart) any size before a handler could refuse it.
MAX_BODY = 16 * 1024 * 1024


class BodyLimit:
    """413 problem JSON for a request body over MAX_BODY: at once when Content-Length says so,
    else as soon as the chunks read pass it (plain ASGI, like SecurityHeaders)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = problems.Problem(413, "Too large", f"a request body is limited to {self.limit} bytes")
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await problems.response(too_large, scope.get("path", ""))(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # inside the handler, where FastAPI passes HTTPException on
                    raise StarletteHTTPException(413, f"Too large: {too_large.detail}")
            return message

        return await self.app(scope, counted, send)


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="Raqib", version=__version__, openapi_url=None, docs_url=None, redoc_url=None,
                  description="Search, trends, topics, alerts and feeds of a Raqib news monitor. "
                              "Errors are RFC 9457 problem JSON.")
    app.state.ctx = ctx
    problems.install(app)

    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    read = [Depends(require_scope("read"))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=read)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=read)
    async def docs() -> HTMLResponse:
        return _docs_page()

    app.mount("/static/swagger-ui", StaticFiles(directory=STATIC / "swagger-ui"), name="swagger-ui")
    app.include_router(ops.router)
    app.include_router(api.router)
    app.include_router(api_sources.router)
    app.include_router(feeds_out.router)
    app.include_router(pages.router)
    return app


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Raqib API</title>
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<link rel="icon" href="/static/swagger-ui/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-ui/init.js"></script>
</body></html>
"""


def _docs_page() -> HTMLResponse:
    """FastAPI's Swagger page loads from a CDN and starts with an inline script; this one loads
    the vendored bundle and a start-up file from this server."""
    return HTMLResponse(DOCS_PAGE)
