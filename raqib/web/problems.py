"""Errors as RFC 9457 problem JSON: every handler raises Problem, the app renders it."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from monitor.errors import QueryError

MEDIA = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", type_: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra
        self.headers = headers or {}

    def body(self, instance: str = "") -> dict:
        out = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        return out | self.extra


def response(p: Problem, path: str = "") -> JSONResponse:
    return JSONResponse(p.body(path), status_code=p.status, media_type=MEDIA, headers=p.headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return response(exc, request.url.path)

    @app.exception_handler(QueryError)
    async def _query(request: Request, exc: QueryError) -> JSONResponse:
        """Raqib's one-line message for a query it cannot read (the same as the CLI's)."""
        return response(Problem(400, "Invalid query", str(exc)), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return response(Problem(422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}"),
                        request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return response(Problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})),
                        request.url.path)
