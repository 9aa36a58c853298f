"""Errors as RFC 9457 problem JSON: every handler raises Problem, the app renders it."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", type_: str = "about:blank", **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra

    def body(self, instance: str = "") -> dict:
        out = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        return out | self.extra


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse(exc.body(request.url.path), status_code=exc.status,
                            media_type="application/problem+json")
