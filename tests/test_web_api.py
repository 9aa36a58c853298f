"""The HTTP API through a real uvicorn server (httpx client) over a data dir that a real poll
filled with real articles (topical ANT coverage from five sources)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import UTC, datetime

import feedparser
import pytest

from alerts.subscriptions import load_all
from monitor.config import load_config
from monitor.errors import QueryError
from monitor.hits import hit_json
from monitor.query import evaluate, parse
from monitor.store import Store
from raqib.pipeline import Pipeline
from raqib.web.queries import matcher_doc
from tests.web_setup import fill, filled_copy, run_cli, sample_docs, serving

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-master")
    asyncio.run(fill(tmp, sample_docs()))
    return tmp


@pytest.fixture
def config(master):
    """The shared filled data dir, for tests that only read."""
    return load_config(master / "config")


@pytest.fixture
def private(master, tmp_path):
    """A private copy, for tests that write."""
    return load_config(filled_copy(master, tmp_path))


def stored(config):
    store = Store(config.data_dir / "raqib.db")
    try:
        return [a for batch in store.iter_articles() for a in batch]
    finally:
        store.close()


def expected(config, query):
    """The reference answer: every stored article the query language says matches."""
    node = parse(query)
    return [a for a in stored(config) if evaluate(node, matcher_doc(a))]


async def test_search_pages_through_every_match_with_hit_json(config):
    want = {a.id for a in expected(config, "topic:nato")}
    assert len(want) >= 20
    async with serving(config) as c:
        seen, cursor = [], None
        while True:
            r = await c.get("/api/v1/search", params={"q": "topic:nato", "limit": 7, "sort": "date",
                                                      **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == len(want)
            seen += [h["id"] for h in body["hits"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) and set(seen) == want
        # the hit shape is monitor.hits.hit_json's, field for field
        page = await c.ctx.index.search("كورسك", limit=5)
        r = await c.get("/api/v1/search", params={"q": "كورسك", "limit": 5})
        assert r.json()["hits"] == [hit_json(h) for h in page.hits]
        # highlights are offsets into the snippet's text, never marks inside it
        hits = r.json()["hits"]
        marked = [h["snippet"]["text"][m["start"]:m["end"]] for h in hits for m in h["snippet"]["marks"]]
        assert marked and all("كورسك" in w for w in marked)


async def test_facets_count_the_matches_by_topic_source_language_and_day(config):
    query = "الناتو OR topic:kursk"
    matches = expected(config, query)
    async with serving(config) as c:
        r = await c.get("/api/v1/search", params={"q": query, "facets": "true", "limit": 1})
        facets = {k: {v["value"]: v["count"] for v in vs} for k, vs in r.json()["facets"].items()}
    assert facets["source"] == dict(Counter(a.source for a in matches))
    assert facets["language"] == dict(Counter(a.language for a in matches))
    assert facets["topic"] == dict(Counter(t for a in matches for t in a.topics))
    days = Counter(a.published.strftime("%Y-%m-%d") for a in matches)
    assert facets["day"] == dict(sorted(days.items())[-50:])
    assert set(facets["source"]) == {"ant-a", "ant-b"}


async def test_a_bad_query_is_a_400_problem_with_raqibs_one_line(config):
    async with serving(config) as c:
        for q in ("foo:bar", "topic:nosuchtopic", "(الناتو", "source:nosuchfeed"):
            r = await c.get("/api/v1/search", params={"q": q})
            assert r.status_code == 400, q
            assert r.headers["content-type"].startswith(PROBLEM)
            with pytest.raises(QueryError) as e:
                from raqib.cli import check_query

                check_query(config, q)
            assert r.json()["detail"] == str(e.value) and "\n" not in r.json()["detail"]
            assert r.json()["status"] == 400 and r.json()["instance"] == "/api/v1/search"
        r = await c.get("/api/v1/search", params={"q": "الناتو", "cursor": "zz"})
        assert r.status_code == 400 and "cursor" in r.json()["detail"]
        r = await c.get("/api/v1/search", params={"q": "الناتو", "limit": 0})
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["detail"].startswith("query.limit")


async def test_article_carries_its_topic_spans(config):
    arts = [a for a in stored(config) if "kursk" in a.topics]
    async with serving(config) as c:
        body = (await c.get(f"/api/v1/articles/{arts[0].id}")).json()
        assert body["id"] == arts[0].id and body["topics"] == list(arts[0].topics)
        assert body["spans"] and all(body["text"][s["start"]:s["end"]] == s["text"] for s in body["spans"])
        assert any(s["topic"] == "kursk" and "كورسك" in s["text"] for s in body["spans"])
        r = await c.get("/api/v1/articles/nope")
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


async def test_trends_fill_gaps_and_match_the_cli(config):
    async with serving(config) as c:
        body = (await c.get("/api/v1/trends", params={"q": "topic:kursk", "interval": "day"})).json()
    assert list(body["topics"]) == ["kursk"]
    counts = body["topics"]["kursk"]
    assert sum(counts) == len(expected(config, "topic:kursk"))
    assert len(counts) == len(body["buckets"]) and 0 in counts  # gaps are there, as zeros
    cli = run_cli("trends", "topic:kursk", "--json", "--config", str(config.config_dir))
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == body


async def test_topics_and_tag_answer_like_raqib_tag_jsonl(config):
    doc = {"id": 7, "title": "قمة الناتو", "text": "هجوم أوكراني في منطقة كورسك، وسيناتور أمريكي يعلق"}
    cli = run_cli("tag", "--jsonl", "--config", str(config.config_dir), stdin=json.dumps(doc) + "\n")
    assert cli.returncode == 0, cli.stderr
    async with serving(config) as c:
        topics = (await c.get("/api/v1/topics")).json()
        assert {t["id"] for t in topics} == {t.id for t in config.topics}
        r = await c.post("/api/v1/topics/tag", json=doc)
        assert r.status_code == 200
        assert r.json() == json.loads(cli.stdout)
        assert set(r.json()["topics"]) == {"nato", "kursk"}
        r = await c.post("/api/v1/topics/tag", json={"title": "x"})
        assert r.status_code == 422 and "text" in r.json()["detail"]


async def test_outbox_lists_failed_alerts_and_retry_needs_the_service(private):
    async with serving(private) as c:
        n_alerts = len(expected(private, "topic:kursk"))
        assert n_alerts >= 3
        body = (await c.get("/api/v1/alerts/outbox", params={"state": "failed"})).json()
        # the first send failed; the channel rests, so the others wait untried (pending)
        n_failed = len(body["items"])
        assert n_failed >= 1 and body["backlog"]["pending"] == n_alerts
        waiting = (await c.get("/api/v1/alerts/outbox", params={"state": "pending"})).json()["items"]
        assert len(waiting) == n_alerts - n_failed and all(i["attempts"] == 0 for i in waiting)
        every = (await c.get("/api/v1/alerts/outbox", params={"limit": 2})).json()
        assert len(every["items"]) == 2 and every["next_before"] == every["items"][-1]["id"]
        item = body["items"][0]
        assert item["state"] == "failed" and item["last_error"] and item["subscription"] == "kursk-watch"
        assert (await c.get("/api/v1/alerts/outbox", params={"state": "sent"})).json()["items"] == []
        mine = (await c.get("/api/v1/alerts/outbox", params={"subscription": "kursk-watch", "limit": 500})).json()
        assert len(mine["items"]) == n_alerts and {i["subscription"] for i in mine["items"]} == {"kursk-watch"}
        none = (await c.get("/api/v1/alerts/outbox", params={"subscription": "someone-else"})).json()
        assert none["items"] == []
        r = await c.post("/api/v1/alerts/outbox/retry")
        assert r.status_code == 409 and "raqib run" in r.json()["detail"]
    async with Pipeline(private) as p:
        woken = []
        p.on_alerts.append(lambda: woken.append(1))
        async with serving(private, pipeline=p) as c:
            before = datetime.now(UTC).replace(microsecond=0).isoformat()
            assert item["next_attempt"] < before  # (due long ago: the retry makes it due now)
            r = await c.post("/api/v1/alerts/outbox/retry", json={"ids": [item["id"]]})
            assert r.json() == {"retried": 1} and woken
            again = (await c.get("/api/v1/alerts/outbox", params={"state": "failed", "limit": 500})).json()
            row = next(i for i in again["items"] if i["id"] == item["id"])
            assert row["next_attempt"] >= before
            r = await c.post("/api/v1/alerts/outbox/retry")
            assert r.json() == {"retried": n_failed}


async def test_search_and_subscription_as_atom_and_json_feed(config):
    store = Store(config.data_dir / "raqib.db")
    sub = load_all(store, ["kursk-watch"])[0]
    store.close()
    async with serving(config) as c:
        search = (await c.get("/api/v1/search", params={"q": sub.query, "sort": "date", "limit": 10})).json()
        atom = await c.get("/feeds/search.atom", params={"q": sub.query, "limit": 10})
        assert atom.headers["content-type"].startswith("application/atom+xml")
        parsed = feedparser.parse(atom.content)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert [e.title for e in parsed.entries] == [h["title"] for h in search["hits"]]
        assert [e.link for e in parsed.entries] == [h["link"] for h in search["hits"]]
        assert "kursk" in {t.term for t in parsed.entries[0].tags}
        js = await c.get("/feeds/search.json", params={"q": sub.query, "limit": 10})
        assert js.headers["content-type"].startswith("application/feed+json")
        feed = js.json()
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert [i["url"] for i in feed["items"]] == [h["link"] for h in search["hits"]]
        sub_atom = feedparser.parse((await c.get("/feeds/subscriptions/kursk-watch.atom",
                                                 params={"limit": 10})).content)
        assert not sub_atom.bozo and sub_atom.feed.title == "Raqib: كورسك"
        assert [e.link for e in sub_atom.entries] == [h["link"] for h in search["hits"]]
        sub_json = (await c.get("/feeds/subscriptions/kursk-watch.json", params={"limit": 10})).json()
        assert [i["url"] for i in sub_json["items"]] == [h["link"] for h in search["hits"]]
        r = await c.get("/feeds/subscriptions/nope.atom")
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
        r = await c.get("/feeds/search.atom", params={"q": "foo:bar"})
        assert r.status_code == 400


async def test_security_headers_and_docs_served_from_this_machine(config):
    async with serving(config) as c:
        for path in ("/healthz", "/docs", "/api/v1/topics", "/api/v1/search?q=foo:bar", "/openapi.json"):
            r = await c.get(path)
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
        docs = (await c.get("/docs")).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", docs), "an inline script"
        refs = re.findall(r'(?:src|href)="([^"]+)"', docs)
        assert refs and all(u.startswith("/static/") for u in refs)
        for u in refs:
            assert (await c.get(u)).status_code == 200, u
        init = (await c.get("/static/swagger-ui/init.js")).text
        assert "/openapi.json" in init and "http" not in init
        spec = (await c.get("/openapi.json")).json()
        assert {"/api/v1/search", "/api/v1/stream", "/feeds/search.atom", "/metrics"} <= set(spec["paths"])


async def test_health_ready_and_metrics(private):
    async with serving(private) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"store": "ok", "index": "ok"}
        text = (await c.get("/metrics")).text
    kursk = len(expected(private, "topic:kursk"))
    assert f'raqib_articles{{topic="kursk"}} {float(kursk)}' in text
    assert f'raqib_outbox{{status="pending"}} {float(kursk)}' in text
    assert 'raqib_queue_backlog{queue="waiting_to_index"} 0.0' in text
    # the poll that filled the data dir ran in this process: its counters are here
    assert re.search(r'raqib_polls_total\{status="ok"\} [1-9]', text)
    assert re.search(r'raqib_publish_to_fetch_seconds_count [1-9]', text)
    assert re.search(r'raqib_fetch_to_alert_seconds_count [1-9]', text)
    assert 'raqib_alert_failures_total{channel="hook"}' in text
    # an index that cannot be opened: not ready
    (private.data_dir / "index" / "meta.json").write_text("not json")
    async with serving(private) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["index"].startswith("error")
        assert (await c.get("/healthz")).status_code == 200


async def test_stream_resumes_after_last_event_id(config):
    """A client that reconnects with Last-Event-ID gets what was stored after it, in order."""
    want = expected(config, "topic:kursk")
    store = Store(config.data_dir / "raqib.db")
    rowids = store.rowids([a.id for a in want])
    store.close()
    first = min(rowids.values())
    async with serving(config) as c:
        got = []

        async def read():
            async with c.stream("GET", "/api/v1/stream", params={"q": "topic:kursk"},
                                headers={"Last-Event-ID": str(first)}) as r:
                eid = ""
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        eid = line[4:]
                    elif line.startswith("data: ") and eid:
                        got.append((int(eid), json.loads(line[6:])["id"]))
                        eid = ""
                        if len(got) == len(want) - 1:
                            return

        await asyncio.wait_for(read(), 60)  # a missing event fails here instead of hanging
    assert got == sorted((r, i) for i, r in rowids.items() if r > first)
