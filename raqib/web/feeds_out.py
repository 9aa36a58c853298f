"""Outputs people subscribe to: every query and every subscription as an Atom feed (feedgen)
and a JSON Feed 1.1, newest articles first, like Google Alerts' feed output."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from feedgen.feed import FeedGenerator

from alerts.subscriptions import load_all
from raqib.web import queries
from raqib.web.auth import require_scope
from raqib.web.context import WebContext, ctx_dep
from raqib.web.pages import safe_link
from raqib.web.problems import Problem

router = APIRouter(prefix="/feeds", tags=["feeds"], dependencies=[Depends(require_scope("read"))])
Ctx = Annotated[WebContext, Depends(ctx_dep)]
Limit = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)]
ATOM = "application/atom+xml; charset=utf-8"
JSON_FEED = "application/feed+json; charset=utf-8"


async def _latest(ctx: WebContext, query: str, limit: int) -> list[dict[str, Any]]:
    page = await queries.search(ctx, query, limit=limit, sort="date")
    return page["hits"]


# What XML 1.0 cannot carry at all (lxml refuses it): C0 controls but tab/LF/CR, lone
# surrogates, U+FFFE/U+FFFF. A query, a subscription's name or a feed's text may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def atom(title: str, self_url: str, feed_id: str, hits: list[dict[str, Any]]) -> bytes:
    fg = FeedGenerator()
    fg.id(_x(feed_id))
    fg.title(_x(title))
    fg.link(href=_x(self_url), rel="self")
    fg.generator("Raqib")
    fg.updated(max((h["published"] for h in hits), default=None) or datetime.now(UTC))
    for h in reversed(hits):  # feedgen puts each new entry first
        e = fg.add_entry()
        e.id(_x(f"urn:raqib:article:{h['id']}"))
        e.title(_x(h["title"] or h["link"] or h["id"]))
        if link := safe_link(h["link"]):  # a javascript: link would be clickable in a reader
            e.link(href=_x(link), rel="alternate")
        else:  # Atom wants an alternate link or a content element (feedgen raises without)
            e.content(_x(h["snippet"]["text"] or h["title"] or h["id"]), type="text")
        e.published(h["published"])
        e.updated(h["published"])
        e.author(name=_x(h["source"]))
        if h["snippet"]["text"]:
            e.summary(_x(h["snippet"]["text"]))
        for t in h["topics"]:
            e.category(term=_x(t))
    return fg.atom_str(pretty=True)


def json_feed(title: str, self_url: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "https://jsonfeed.org/version/1.1", "title": title, "feed_url": self_url,
            "items": [{"id": f"urn:raqib:article:{h['id']}", "url": safe_link(h["link"]), "title": h["title"],
                       "content_text": h["snippet"]["text"] or h["title"], "date_published": h["published"],
                       "authors": [{"name": h["source"]}], "tags": h["topics"], "language": h["language"],
                       "_raqib": h} for h in hits]}


def _render(kind: str, title: str, request: Request, feed_id: str, hits: list[dict[str, Any]]) -> Response:
    url = str(request.url)
    if kind == "atom":
        return Response(atom(title, url, feed_id, hits), media_type=ATOM)
    import json

    return Response(json.dumps(json_feed(title, url, hits), ensure_ascii=False), media_type=JSON_FEED)


@router.get("/search.atom", summary="A query as an Atom feed", response_class=Response)
async def search_atom(request: Request, ctx: Ctx, q: Annotated[str, Query(max_length=4000)],
                      limit: Limit = 50) -> Response:
    return _render("atom", f"Raqib: {q}", request, f"urn:raqib:search:{q}", await _latest(ctx, q, limit))


@router.get("/search.json", summary="A query as a JSON Feed", response_class=Response)
async def search_json(request: Request, ctx: Ctx, q: Annotated[str, Query(max_length=4000)],
                      limit: Limit = 50) -> Response:
    return _render("json", f"Raqib: {q}", request, f"urn:raqib:search:{q}", await _latest(ctx, q, limit))


async def _subscription(ctx: WebContext, sub_id: str):
    found = await ctx.db(load_all, ctx.store, [sub_id])
    if not found:
        raise Problem(404, "Not found", f"no subscription with id {sub_id[:100]!r}")
    return found[0]


@router.get("/subscriptions/{sub_id}.atom", summary="A subscription's matches as an Atom feed",
            response_class=Response)
async def subscription_atom(request: Request, ctx: Ctx, sub_id: str, limit: Limit = 50) -> Response:
    sub = await _subscription(ctx, sub_id)
    return _render("atom", f"Raqib: {sub.name or sub.id}", request, f"urn:raqib:subscription:{sub.id}",
                   await _latest(ctx, sub.query, limit))


@router.get("/subscriptions/{sub_id}.json", summary="A subscription's matches as a JSON Feed",
            response_class=Response)
async def subscription_json(request: Request, ctx: Ctx, sub_id: str, limit: Limit = 50) -> Response:
    sub = await _subscription(ctx, sub_id)
    return _render("json", f"Raqib: {sub.name or sub.id}", request, f"urn:raqib:subscription:{sub.id}",
                   await _latest(ctx, sub.query, limit))


__all__ = ["router", "atom", "json_feed"]
