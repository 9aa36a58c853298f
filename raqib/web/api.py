"""HTTP API v1: search, articles, trends, topics, alerts/outbox, stream. Handlers stay thin:
the answers come from raqib.web.queries, which the pages and feed outputs call too."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from monitor.hits import hit_json
from raqib.web import queries
from raqib.web.auth import require_scope
from raqib.web.context import WebContext, ctx_dep

router = APIRouter(prefix="/api/v1")
read = [Depends(require_scope("read"))]
admin = [Depends(require_scope("admin"))]
Ctx = Annotated[WebContext, Depends(ctx_dep)]
Q = Annotated[str, Query(max_length=4000, description="a query in Raqib's query language (see the README)")]
STREAM_POLL = 1.0  # seconds between looks at the store for new articles
STREAM_KEEPALIVE = 15.0


@router.get("/search", tags=["search"], dependencies=read,
            summary="Search stored articles (cursor paging; facets by topic, source, language, day)")
async def search(ctx: Ctx, q: Q, limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 20,
                 cursor: Annotated[str | None, Query(max_length=100)] = None,
                 sort: Literal["relevance", "date"] = "relevance", facets: bool = False) -> JSONResponse:
    # JSONResponse directly: the answer is plain JSON already (no per-field re-validation)
    return JSONResponse(await queries.search(ctx, q, limit=limit, cursor=cursor, sort=sort, facets=facets))


@router.get("/articles/{article_id}", tags=["search"], dependencies=read,
            summary="One article with its text and the tagged topic spans (offsets into `text`)")
async def article(ctx: Ctx, article_id: str) -> dict[str, Any]:
    return await queries.article(ctx, article_id)


@router.get("/trends", tags=["search"], dependencies=read,
            summary="Articles per topic per day or hour, every interval present (gaps are 0)")
async def trends(ctx: Ctx, q: Annotated[str | None, Query(max_length=4000)] = None,
                 interval: Literal["day", "hour"] = "day") -> dict[str, Any]:
    return await queries.trends(ctx, q, interval)


@router.get("/topics", tags=["topics"], dependencies=read, summary="The tracked topics")
async def topics(ctx: Ctx) -> list[dict[str, Any]]:
    return queries.topics(ctx)


class TagRequest(BaseModel):
    id: Any = None
    title: str = Field("", max_length=10_000)
    text: str = Field(max_length=2_000_000)


@router.post("/topics/tag", tags=["topics"], dependencies=read,
             summary="Tag posted text: the same output as one line of `raqib tag --jsonl`")
async def tag(ctx: Ctx, doc: Annotated[TagRequest, Body()]) -> dict[str, Any]:
    return await asyncio.to_thread(queries.tag, ctx, doc.text, doc.title, doc.id)


@router.get("/alerts/outbox", tags=["alerts"], dependencies=read,
            summary="Alerts in the outbox, newest first: pending, failed (will be retried), sent")
async def outbox(ctx: Ctx, state: Literal["pending", "failed", "sent", "all"] = "all",
                 limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 before: Annotated[int | None, Query(ge=1, le=queries.MAX_ROWID)] = None,
                 subscription: Annotated[str | None, Query(max_length=200, description="one subscription's alerts")]
                 = None) -> dict[str, Any]:
    return await queries.outbox(ctx, state, limit, before, subscription)


class RetryRequest(BaseModel):
    ids: list[int] | None = Field(None, max_length=10_000, description="outbox ids; all failed ones when absent")


@router.post("/alerts/outbox/retry", tags=["alerts"], dependencies=admin,
             summary="Send failed alerts again now (needs the service: 409 under `raqib web`)")
async def retry(ctx: Ctx, body: Annotated[RetryRequest | None, Body()] = None) -> dict[str, int]:
    return {"retried": await queries.retry(ctx, body.ids if body else None)}


def sse(event: str, data: dict, event_id: str | None = None) -> str:
    """One Server-Sent Event (data as one JSON line: JSON never contains a raw newline)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/stream", tags=["search"], dependencies=read,
            summary="Server-Sent Events: each new article matching the query, as it is stored",
            response_class=StreamingResponse)
async def stream(request: Request, ctx: Ctx, q: Q) -> StreamingResponse:
    """Follows the store by rowid (so it works beside the service and on the read side alike);
    `Last-Event-ID` resumes after the last article a client saw."""
    node = await queries.checked(ctx, q)
    last = request.headers.get("last-event-id", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    after = int(last) if last.isascii() and last.isdigit() and len(last) < 19 else await ctx.db(ctx.store.max_rowid)

    async def events():
        nonlocal after
        yield sse("ready", {"query": q, "after": after})
        idle = 0.0
        while not await request.is_disconnected():
            upto, found = await queries.new_matches(ctx, node, after)
            for rowid, a in found:
                yield sse("article", hit_json(queries.as_hit(a, node)), str(rowid))
            if upto != after:
                after = upto
                idle = 0.0
                continue  # more may be waiting: look again at once
            await asyncio.sleep(STREAM_POLL)
            idle += STREAM_POLL
            if idle >= STREAM_KEEPALIVE:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
