"""What the API, the pages and the feeds outputs ask of the store and the index: one plain
function per question, so a page and an API call can never answer differently."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alerts.subscriptions import known_sources
from monitor.analysis import analysis_of, analyzed_doc
from monitor.errors import QueryError
from monitor.hits import hit_json
from monitor.highlight import make_hit, wanted
from monitor.models import Article, SearchHit
from monitor.query import Node, evaluate, parse, validate
from raqib.trends import asked_topics, series
from raqib.web.problems import Problem

if TYPE_CHECKING:
    from raqib.web.context import WebContext

MAX_LIMIT = 100
MAX_ROWID = 2**63 - 1
OUTBOX_STATES = ("pending", "failed", "sent", "all")


async def checked(ctx: WebContext, query: str) -> Node:
    """The parsed query, refused (QueryError → 400) when it names a topic or source that does
    not exist. Configured feeds are checked first; when that fails, the sources `raqib search`
    knows too (feeds listed in the database, and stored sources: old feeds' articles stay
    reachable)."""
    node = parse(query)
    topics = [t.id for t in ctx.config.topics]
    try:
        validate(node, topics, [f.id for f in ctx.config.feeds])
    except QueryError:
        validate(node, topics, await ctx.db(known_sources, ctx.config, ctx.store))
    return node


async def search(ctx: WebContext, query: str, *, limit: int = 20, cursor: str | None = None,
                 sort: str = "relevance", facets: bool = False) -> dict[str, Any]:
    """One page of hits (monitor.hits.hit_json), the cursor of the next, facets on request."""
    await checked(ctx, query)
    page = await ctx.index.search(query, limit=limit, cursor=cursor, sort=sort)  # type: ignore[arg-type]
    out: dict[str, Any] = {"query": query, "total": page.total, "next_cursor": page.next_cursor,
                           "hits": [hit_json(h) for h in page.hits]}
    if facets:
        found = await ctx.index.facets(query)
        out["facets"] = {k: [{"value": v, "count": n} for v, n in vs] for k, vs in found.items()}
    return out


def article_json(a: Article) -> dict[str, Any]:
    """An article with its text and where each topic is mentioned in it (offsets into `text`,
    title + "\\n" + body, the tagger's coordinates)."""
    return {"id": a.id, "title": a.title, "source": a.source, "link": a.link, "feed_url": a.feed_url,
            "published": a.published.isoformat(), "fetched": a.fetched.isoformat(), "language": a.language,
            "topics": list(a.topics), "summary": a.summary, "content": a.content, "text": a.text,
            "spans": [{"topic": m.topic, "start": m.start, "end": m.end, "text": m.text} for m in a.matches]}


async def article(ctx: WebContext, article_id: str) -> dict[str, Any]:
    a = await ctx.db(ctx.store.get, article_id)
    if a is None:
        raise Problem(404, "Not found", f"no article with id {article_id[:100]!r}")
    return article_json(a)


async def trends(ctx: WebContext, query: str | None = None, interval: str = "day") -> dict[str, Any]:
    """Counts per topic per interval with every interval present (raqib.trends), the shape
    of `raqib trends --json`; a query naming topics keeps only those."""
    if interval not in ("day", "hour"):
        raise QueryError(f"unknown interval {interval!r} (hour or day)")
    if query:
        await checked(ctx, query)
    buckets = await ctx.index.trends(query or None, interval=interval)  # type: ignore[arg-type]
    times, counts = series(buckets, interval, asked_topics(query))
    return {"interval": interval, "buckets": [t.isoformat() for t in times], "topics": counts}


def topics(ctx: WebContext) -> list[dict[str, Any]]:
    return [{"id": t.id, "name": t.name, "aliases": list(t.aliases), "weak_aliases": list(t.weak_aliases)}
            for t in ctx.config.topics]


def tag(ctx: WebContext, text: str, title: str = "", doc_id: Any = None) -> dict[str, Any]:
    """The tagger on posted text: one line of `raqib tag --jsonl` (offsets into title + "\\n" +
    text, or text when there is no title)."""
    topics_, matches = ctx.tagger().tag(f"{title}\n{text}" if title else text)
    out: dict[str, Any] = {"id": doc_id} if doc_id is not None else {}
    return out | {"topics": list(topics_), "matches": [
        {"topic": m.topic, "start": m.start, "end": m.end, "text": m.text} for m in matches]}


def _ts(v: float | None) -> str | None:
    return datetime.fromtimestamp(v, UTC).isoformat(timespec="seconds") if v else None


async def outbox(ctx: WebContext, state: str = "all", limit: int = 50, before: int | None = None,
                 subscription: str | None = None) -> dict[str, Any]:
    """Alerts in the outbox, newest first: pending (not yet tried), failed (tried, will be
    retried), sent; `before` pages on with the last id seen; `subscription` keeps one
    subscription's alerts."""
    if state not in OUTBOX_STATES:
        raise Problem(400, "Invalid request", f"unknown state {state!r} ({', '.join(OUTBOX_STATES)})")
    if before is not None and not 1 <= before <= MAX_ROWID:  # SQLite integers are 64-bit
        raise Problem(400, "Invalid request", f"before: an outbox id between 1 and {MAX_ROWID}")
    rows = await ctx.db(ctx.store.outbox_page, state, limit, before, subscription or None)
    items = [{"id": i, "delivery_id": d, "subscription": s, "article": a, "channel": c,
              "state": "sent" if st == "sent" else "failed" if err else "pending",
              "attempts": n, "last_error": err, "next_attempt": None if st == "sent" else _ts(nxt),
              "created": _ts(cr), "sent": _ts(sent)}
             for i, d, s, a, c, st, n, err, nxt, cr, sent in rows]
    backlog = await ctx.db(ctx.store.outbox_backlog)
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None,
            "backlog": backlog}


async def retry(ctx: WebContext, ids: list[int] | None = None) -> int:
    """Failed alerts due again now (and the service's deliverer woken); needs the service."""
    if ctx.pipeline is None:
        raise Problem(409, "Conflict", "retrying alerts needs the service: this is `raqib web` "
                      "(read side); run it through `raqib run`")
    n = await ctx.db(ctx.store.outbox_retry, ids, time.time())
    for wake in ctx.pipeline.on_alerts:
        wake()
    return n


def matcher_doc(a: Article):
    """The article as the query language sees it, without taking the service's hand-off."""
    return analyzed_doc(replace(a, analysis=analysis_of(a)))


async def new_matches(ctx: WebContext, node: Node, after: int, limit: int = 200
                      ) -> tuple[int, list[tuple[int, Article]]]:
    """(rowid, article) stored after rowid `after` that match `node` (the alert matcher's
    semantics), and the last rowid looked at."""
    rows = await ctx.db(ctx.store.articles_after, after, limit)
    if not rows:
        return after, []
    now = datetime.now(UTC)
    return rows[-1][0], [(r, a) for r, a in rows if evaluate(node, matcher_doc(a), now)]


def as_hit(a: Article, node: Node) -> SearchHit:
    """An article found outside the index (stream, feeds) as a search hit, highlighted alike."""
    return make_hit(a, 0.0, wanted(node))
