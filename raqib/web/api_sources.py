"""HTTP API v1 for what users manage: feeds (with status, OPML) and subscriptions.

Thin handlers over monitor.feedlist and alerts.subscriptions (the functions the CLI and the
pages call too). Refusals map to problem JSON: invalid input 422, unknown id 404, an existing
id or url 409 (pass `?replace=true`), an item managed by feeds.yaml / alerts.yaml 409 naming
the file."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from alerts import subscriptions as subs
from monitor import feedlist
from monitor.errors import QueryError, RaqibError
from raqib.web.auth import require_scope
from raqib.web.context import WebContext
from raqib.web.problems import Problem

router = APIRouter(prefix="/api/v1")


def ctx_of(request: Request) -> WebContext:
    """raqib.web.app.ctx_of, imported when called (app.py imports this module)."""
    from raqib.web.app import ctx_of as of

    return of(request)


READ = [Depends(require_scope("read"))]
ADMIN = [Depends(require_scope("admin"))]

_STATUS = {"invalid": (422, "Invalid input"), "not-found": (404, "Not found"),
           "exists": (409, "Already exists"), "managed": (409, "Managed by a configuration file")}


def _problem(e: Exception) -> Problem:
    if isinstance(e, QueryError):
        return Problem(422, "Bad query", str(e))
    status, title = _STATUS.get(getattr(e, "kind", ""), (400, "Refused"))
    return Problem(status, title, str(e))


async def _call(ctx: WebContext, fn, *args) -> Any:
    """A management function on the web side's store thread; its refusals become problems."""
    try:
        return await ctx.db(fn, *args)
    except (RaqibError, QueryError) as e:
        raise _problem(e) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedIn(_Body):
    id: str
    url: str
    name: str = ""
    language: str = ""
    interval: float | None = None
    enabled: bool = True


class FeedPatch(_Body):
    url: str | None = None
    name: str | None = None
    language: str | None = None
    interval: float | None = None
    enabled: bool | None = None


class ThrottleIn(_Body):
    max: int
    per: float = 3600


class SubscriptionIn(_Body):
    id: str | None = None
    query: str
    channels: list[str]
    name: str = ""
    throttle: ThrottleIn | None = None
    digest_minutes: float = 0
    backfill: bool = False


class PreviewIn(_Body):
    query: str
    limit: int = 5


# ------------------------------------------------------------------ feeds


def _feed_row(store, feed_id: str) -> dict:
    for r in feedlist.status(store):
        if r["id"] == feed_id:
            return r
    raise feedlist.FeedListError("not-found", f"no feed {feed_id!r}")


@router.get("/feeds", dependencies=READ, tags=["feeds"])
async def list_feeds(ctx: WebContext = Depends(ctx_of)) -> dict:
    """Every feed with its status: last poll, errors, back-off, next due, articles stored."""
    return {"feeds": await _call(ctx, feedlist.status, ctx.store)}


@router.get("/feeds/export", dependencies=READ, tags=["feeds"])
async def export_feeds(ctx: WebContext = Depends(ctx_of)) -> Response:
    data = await _call(ctx, feedlist.export_opml, ctx.store)
    return Response(data, media_type="text/x-opml",
                    headers={"Content-Disposition": 'attachment; filename="raqib-feeds.opml"'})


@router.post("/feeds/import", dependencies=ADMIN, tags=["feeds"])
async def import_feeds(request: Request, replace: bool = False, ctx: WebContext = Depends(ctx_of)) -> dict:
    """The request body is the OPML document; each outline refused is one line in `skipped`."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > feedlist.OPML_MAX_BYTES:
            raise Problem(413, "Too large", f"OPML is limited to {feedlist.OPML_MAX_BYTES} bytes")
    report = await _call(ctx, feedlist.import_opml, ctx.store, bytes(data), "api", replace)
    return report.as_dict()


@router.post("/feeds", dependencies=ADMIN, status_code=201, tags=["feeds"])
async def add_feed(body: FeedIn, replace: bool = False, ctx: WebContext = Depends(ctx_of)) -> dict:
    await _call(ctx, feedlist.add, ctx.store, body.model_dump(), "api", replace)
    return await _call(ctx, _feed_row, ctx.store, body.id)


@router.get("/feeds/{feed_id}", dependencies=READ, tags=["feeds"])
async def get_feed(feed_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    return await _call(ctx, _feed_row, ctx.store, feed_id)


@router.patch("/feeds/{feed_id}", dependencies=ADMIN, tags=["feeds"])
async def edit_feed(feed_id: str, body: FeedPatch, ctx: WebContext = Depends(ctx_of)) -> dict:
    await _call(ctx, feedlist.edit, ctx.store, feed_id, body.model_dump(exclude_unset=True))
    return await _call(ctx, _feed_row, ctx.store, feed_id)


@router.delete("/feeds/{feed_id}", dependencies=ADMIN, status_code=204, tags=["feeds"])
async def remove_feed(feed_id: str, ctx: WebContext = Depends(ctx_of)) -> Response:
    await _call(ctx, feedlist.remove, ctx.store, feed_id)
    return Response(status_code=204)


@router.post("/feeds/{feed_id}/enable", dependencies=ADMIN, tags=["feeds"])
async def enable_feed(feed_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    await _call(ctx, feedlist.set_enabled, ctx.store, feed_id, True)
    return await _call(ctx, _feed_row, ctx.store, feed_id)


@router.post("/feeds/{feed_id}/disable", dependencies=ADMIN, tags=["feeds"])
async def disable_feed(feed_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    await _call(ctx, feedlist.set_enabled, ctx.store, feed_id, False)
    return await _call(ctx, _feed_row, ctx.store, feed_id)


@router.post("/feeds/{feed_id}/poll", dependencies=ADMIN, tags=["feeds"])
async def poll_feed(feed_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    """Poll one feed now, then index and match what it brought (only where a poller runs)."""
    if ctx.pipeline is None:
        raise Problem(409, "No poller", "this server only reads the data dir (`raqib web`); "
                      "poll from the `raqib run` that owns it")
    try:
        return await feedlist.poll_now(ctx.pipeline, feed_id)
    except RaqibError as e:
        raise _problem(e) from None


# ------------------------------------------------------------------ subscriptions


def _values(body: SubscriptionIn, sub_id: str | None = None) -> dict:
    values = body.model_dump()
    if sub_id is not None:
        if body.id not in (None, sub_id):
            raise Problem(422, "Invalid input", f"id: the body says {body.id!r}, the path {sub_id!r}")
        values["id"] = sub_id
    elif not body.id:
        raise Problem(422, "Invalid input", "id: a subscription needs an id")
    return values


@router.get("/subscriptions", dependencies=READ, tags=["subscriptions"])
async def list_subscriptions(ctx: WebContext = Depends(ctx_of)) -> dict:
    return {"subscriptions": [subs.as_dict(s) for s in await _call(ctx, subs.load_all, ctx.store)]}


@router.post("/subscriptions/preview", dependencies=READ, tags=["subscriptions"])
async def preview_query(body: PreviewIn, ctx: WebContext = Depends(ctx_of)) -> dict:
    """What a query would have matched among the stored articles: "would have matched N, e.g. …"."""
    return await _preview(ctx, body.query, body.limit)


async def _preview(ctx: WebContext, query: str, limit: int) -> dict:
    if not 1 <= limit <= 50:
        raise Problem(422, "Invalid input", "limit: between 1 and 50")
    sources = await _call(ctx, subs.known_sources, ctx.config, ctx.store)
    try:
        return await subs.would_match(ctx.config, ctx.index, query, sources, limit)
    except (QueryError, RaqibError) as e:
        raise _problem(e) from None


@router.post("/subscriptions", dependencies=ADMIN, status_code=201, tags=["subscriptions"])
async def create_subscription(body: SubscriptionIn, replace: bool = False,
                              ctx: WebContext = Depends(ctx_of)) -> dict:
    s = await _call(ctx, subs.create, ctx.config, ctx.store, _values(body), "api", replace)
    return subs.as_dict(s)


@router.get("/subscriptions/{sub_id}", dependencies=READ, tags=["subscriptions"])
async def get_subscription(sub_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    return subs.as_dict(await _call(ctx, subs.get, ctx.store, sub_id))


@router.put("/subscriptions/{sub_id}", dependencies=ADMIN, tags=["subscriptions"])
async def replace_subscription(sub_id: str, body: SubscriptionIn, ctx: WebContext = Depends(ctx_of)) -> dict:
    """Create or replace (PUT names the resource, so replacing needs no flag)."""
    s = await _call(ctx, subs.create, ctx.config, ctx.store, _values(body, sub_id), "api", True)
    return subs.as_dict(s)


@router.delete("/subscriptions/{sub_id}", dependencies=ADMIN, status_code=204, tags=["subscriptions"])
async def delete_subscription(sub_id: str, ctx: WebContext = Depends(ctx_of)) -> Response:
    await _call(ctx, subs.delete, ctx.config, ctx.store, sub_id)
    return Response(status_code=204)


@router.post("/subscriptions/{sub_id}/pause", dependencies=ADMIN, tags=["subscriptions"])
async def pause_subscription(sub_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    return subs.as_dict(await _call(ctx, subs.set_paused, ctx.config, ctx.store, sub_id, True))


@router.post("/subscriptions/{sub_id}/resume", dependencies=ADMIN, tags=["subscriptions"])
async def resume_subscription(sub_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    return subs.as_dict(await _call(ctx, subs.set_paused, ctx.config, ctx.store, sub_id, False))


@router.get("/subscriptions/{sub_id}/preview", dependencies=READ, tags=["subscriptions"])
async def preview_subscription(sub_id: str, limit: int = Query(5), ctx: WebContext = Depends(ctx_of)) -> dict:
    s = await _call(ctx, subs.get, ctx.store, sub_id)
    return await _preview(ctx, s.query, limit)


@router.post("/subscriptions/{sub_id}/test", dependencies=ADMIN, tags=["subscriptions"])
async def test_subscription(sub_id: str, ctx: WebContext = Depends(ctx_of)) -> dict:
    """Send one test message through each of the subscription's real channels (the newest
    matching article when there is one); {"channels": {name: "sent" | "failed: …"}}."""
    s = await _call(ctx, subs.get, ctx.store, sub_id)
    try:
        page = await subs.preview(ctx.index, s.query, 1)
    except (QueryError, RaqibError):
        page = None
    article = page.hits[0].article if page and page.hits else None
    results = await subs.test_send(ctx.config, s, article)
    return {"subscription": sub_id, "article_id": article.id if article else None, "channels": results}


@router.get("/subscriptions/{sub_id}/deliveries", dependencies=READ, tags=["subscriptions"])
async def subscription_deliveries(sub_id: str, limit: int = Query(50, ge=1, le=1000),
                                  ctx: WebContext = Depends(ctx_of)) -> dict:
    """The delivery log from the outbox, newest first."""
    await _call(ctx, subs.get, ctx.store, sub_id)
    return {"subscription": sub_id, "deliveries": await _call(ctx, subs.delivery_log, ctx.store, sub_id, limit)}
