"""Builds the FastAPI app from a WebContext: API routers, pages, errors as problem JSON."""

from __future__ import annotations

from fastapi import FastAPI, Request

from raqib import __version__
from raqib.web import api, api_sources, pages, problems
from raqib.web.context import WebContext


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="Raqib", version=__version__, openapi_url="/openapi.json", docs_url="/docs")
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(api.router)
    app.include_router(api_sources.router)
    app.include_router(pages.router)
    return app


def ctx_of(request: Request) -> WebContext:
    """The dependency handlers use to reach the store, index and pipeline."""
    return request.app.state.ctx
