"""Defects found in the review of the merged main (issues #9-#11), each pinned by a test
that fails without its fix."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from monitor import retention
from monitor.config import load_config
from raqib.pipeline import Pipeline
from raqib.service import Service, run_once
from monitor.store import Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import write_config
from tests.helpers import make_article

AGE = timedelta(days=40)


class _Past(datetime):
    """The pipeline's clock 40 days ago: a poll then stamps its articles as fetched then."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) - AGE


async def test_retention_keeps_an_old_article_its_feed_still_carries(tmp_path, feed_server,
                                                                     webhook_receiver, monkeypatch):
    """An article older than retention.days that its feed still carries must stay (README:
    "an old article still in its feed and fetched again stays"): deleting it made the next
    poll store it anew, and a subscription alerting on old articles got it a second time."""
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "x")
    pub = format_datetime(datetime.now(UTC) - AGE - timedelta(days=1))
    feed_server.set_feed("/a.xml", rss([rss_item("قمة الناتو", "https://example.org/a1",
                                                 "اجتماع في لاهاي", pub=pub, guid="g-1")]), etag=False)
    cfg = load_config(write_config(
        tmp_path, [("a", feed_server.url("/a.xml"))],
        channels={"hook": {"type": "webhook", "url": webhook_receiver.url,
                           "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "s", "query": "الناتو", "channels": ["hook"], "backfill": True}]))
    with monkeypatch.context() as m:
        m.setattr("raqib.pipeline.datetime", _Past)
        reports, _, _ = await run_once(cfg)  # 40 days ago
    assert reports[0].new == 1
    reports, _, _ = await run_once(cfg)  # today: the feed still carries it
    assert reports[0].new == 0

    async def db(fn, *a):
        return fn(*a)

    store = Store(cfg.data_dir / "raqib.db")
    try:
        async with Pipeline(cfg, workers=0) as p:
            rep = await retention.apply(db, store, p.index, 30)
    finally:
        store.close()
    assert rep.articles == 0
    reports, _, _ = await run_once(cfg)
    assert reports[0].new == 0
    assert len(webhook_receiver.items()) == 1


async def test_retention_waits_for_a_drain_so_the_index_keeps_no_deleted_article(tmp_path):
    """Retention deletes a batch from the index, then from the store. A drain that read the
    batch as queued and added it in between left documents in the index whose rows were gone
    (counted by every search, never shown, never deleted)."""
    cfg = load_config(write_config(tmp_path, [], settings={"retention": {"days": 30}}))
    now = datetime.now(UTC)
    arts = [replace(make_article(f"قمة الناتو {i}", "اجتماع في لاهاي", link=f"https://n.example.org/{i}",
                                 published=now - AGE), fetched=now - AGE) for i in range(20)]
    async with Pipeline(cfg, workers=0) as p:
        await p.db(p.store.ingest, arts, [], {}, None)
        adding, index_deleted, added = asyncio.Event(), asyncio.Event(), asyncio.Event()
        add, delete = p.index.add, p.index.delete

        async def wait(event):  # a chance for the other side to act, not a deadline
            try:
                await asyncio.wait_for(event.wait(), 1.0)
            except TimeoutError:
                pass

        async def slow_add(articles):  # the drain read the batch as queued, then adds it...
            adding.set()
            await wait(index_deleted)  # ...after retention deleted it from the index
            await add(articles)
            added.set()

        async def slow_delete(ids):  # retention: the index, then (after the add) the store
            await delete(ids)
            index_deleted.set()
            await wait(added)

        p.index.add, p.index.delete = slow_add, slow_delete
        service = Service(cfg)
        service.pipeline = p
        drain = asyncio.create_task(p.drain())
        await adding.wait()
        await service._retention_job()
        await drain
        await p.drain()
        assert await p.db(p.store.count) == 0
        assert await p.index.count() == 0


def test_a_facet_link_narrows_a_query_with_or():
    """A facet link is the query AND the facet value; appended bare to `a OR b`, the value
    bound to `b` alone (AND binds tighter), so the page it led to held articles outside the
    facet and its total was not the count shown beside the link."""
    from urllib.parse import parse_qs, urlsplit

    from monitor.analysis import analyzed_doc
    from monitor.query import evaluate, parse
    from raqib.web.pages import _refine

    outside = make_article("هجوم في كورسك", "قصف على المدينة", topics=())
    for q in ("كورسك OR الناتو", "كورسك الناتو", "كورسك"):
        narrowed = parse_qs(urlsplit(_refine(q, "topic", "kursk")).query)["q"][0]
        assert not evaluate(parse(narrowed), analyzed_doc(outside)), narrowed
    assert evaluate(parse("كورسك OR الناتو"), analyzed_doc(outside))  # it is in the query's results
    # a query without OR keeps its plain form in the link
    assert parse_qs(urlsplit(_refine("كورسك", "topic", "kursk")).query)["q"] == ["كورسك topic:kursk"]


async def test_api_accepts_a_source_the_cli_accepts_a_feed_added_in_the_database(tmp_path):
    """`source:ID` of a feed added with `feeds add`, the API or the pages (no article stored
    yet): `raqib search` took it, the API and pages refused it as an unknown source (they
    checked feeds.yaml's feeds and stored sources only)."""
    from alerts.subscriptions import known_sources
    from indexers.tantivy_index import TantivyIndex
    from monitor import feedlist
    from raqib.cli import check_query
    from raqib.web import queries
    from raqib.web.context import WebContext

    cfg = load_config(write_config(tmp_path, [("a", "http://127.0.0.1:9/a.xml")]))
    db = cfg.data_dir / "raqib.db"
    store = Store(db)
    feedlist.add(store, {"id": "newsdesk", "url": "http://127.0.0.1:9/n.xml"})
    check_query(cfg, "source:newsdesk", known_sources(cfg, store))  # the CLI takes it
    ctx = WebContext(cfg, store, TantivyIndex(db))
    try:
        await queries.checked(ctx, "source:newsdesk")
        assert (await queries.search(ctx, "source:newsdesk"))["total"] == 0
    finally:
        await ctx.index.close()
        ctx.close()


async def test_loopback_api_refuses_writes_a_page_from_another_site_sends(tmp_path):
    """On loopback a request without a token acts as admin, for the local user. A page on any
    other site, open in that user's browser, could send the same POST (a "simple" request
    needs no CORS permission: text/plain OPML to /feeds/import, bodiless pause/disable/test);
    the browser says where it comes from (Origin, Sec-Fetch-Site), and such a write now needs
    a token. curl and the pages themselves (same origin) are served as before."""
    import httpx

    from indexers.tantivy_index import TantivyIndex
    from monitor import feedlist
    from raqib.web.app import create_app
    from raqib.web.context import WebContext

    cfg = load_config(write_config(tmp_path, [("a", "http://127.0.0.1:9/a.xml")]))
    db = cfg.data_dir / "raqib.db"
    ctx = WebContext(cfg, Store(db), TantivyIndex(db))
    opml = (b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
            b'<outline type="rss" text="x" xmlUrl="http://127.0.0.1:9/%s.xml"/></body></opml>')
    base = "http://127.0.0.1:8321"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url=base) as c:
            plain = {"Content-Type": "text/plain"}
            r = await c.post("/api/v1/feeds/import", content=opml % b"evil",
                             headers={**plain, "Origin": "https://evil.example"})
            assert r.status_code == 403 and "token" in r.json()["detail"]
            r = await c.post("/api/v1/feeds/a/disable", headers={"Sec-Fetch-Site": "cross-site"})
            assert r.status_code == 403
            r = await c.post("/api/v1/feeds/import", content=opml % b"null", headers={**plain, "Origin": "null"})
            assert r.status_code == 403
            assert ctx.db_sync(feedlist.load, ctx.store) == []
            # the same origin (the pages' own scripts) and clients that are not browsers
            r = await c.post("/api/v1/feeds/import", content=opml % b"same",
                             headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 200, r.text
            r = await c.post("/api/v1/feeds/import", content=opml % b"curl")
            assert r.status_code == 200, r.text
            assert (await c.get("/api/v1/topics", headers={"Origin": "https://evil.example"})).status_code == 200
    finally:
        await ctx.index.close()
        ctx.close()


async def test_a_poll_in_flight_does_not_undo_an_interval_edited_meanwhile(tmp_path):
    """The feed-list watcher re-times an edited feed at once; the poll that was in flight
    then re-timed the job from the old feed's interval, so the edit waited a whole old
    interval (an hour's feed set to a minute polled again only after the hour)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from raqib.pipeline import FeedReport

    cfg = load_config(write_config(tmp_path, [("a", "http://127.0.0.1:9/a.xml")]))
    old = cfg.feeds[0].model_copy(update={"interval": 3600.0})
    new = old.model_copy(update={"interval": 60.0})
    service = Service(cfg)
    service.scheduler = AsyncIOScheduler(timezone=UTC)
    service.scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        service._feeds = {"a": old}
        service._schedule(old, None, now, 1)
        # the watcher sees the edit while the old feed's poll is in flight...
        service._feeds = {"a": new}
        service._schedule(new, None, now, 1)
        # ...and that poll ends with the old interval's next due time
        service._retime(old, FeedReport("a", old.url, "ok", next_due=now + timedelta(seconds=3600)))
        job = service.scheduler.get_job("a")
        assert job.trigger.interval == timedelta(seconds=60)
        assert job.args[0] == new
    finally:
        service.scheduler.shutdown(wait=False)
