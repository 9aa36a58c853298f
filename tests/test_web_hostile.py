"""The web app and API attacked from outside (issue #10): each test is an input that once gave
a 500 or a hostile output, sent to a real uvicorn server over a data dir a real poll filled.
Every refusal must be one clear line (problem JSON or a page), never a traceback."""

from __future__ import annotations

import asyncio
import json

import feedparser
import pytest
from lxml import etree

from monitor.config import load_config
from raqib.web.feeds_out import atom, json_feed
from tests.web_setup import fill, filled_copy, sample_docs, serving

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-hostile")
    asyncio.run(fill(tmp, sample_docs(40)))
    return tmp


@pytest.fixture
def private(master, tmp_path):
    return load_config(filled_copy(master, tmp_path))


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and "Traceback" not in r.text
    return body


async def test_outbox_before_past_64_bits_is_refused_not_a_500(master):
    """SQLite integers are 64-bit: a larger `before` overflowed in the store (500)."""
    async with serving(load_config(master / "config")) as c:
        for before in (2**63, 10**30):
            body = assert_problem(await c.get("/api/v1/alerts/outbox", params={"before": before}), 422)
            assert "before" in body["detail"]
            page = await c.get("/alerts", params={"before": before})
            assert page.status_code == 400 and "before" in page.text and "Traceback" not in page.text
        ok = await c.get("/api/v1/alerts/outbox", params={"before": 2**63 - 1})
        assert ok.status_code == 200 and ok.json()["items"]


async def test_static_name_too_long_for_the_file_system_is_404(master):
    async with serving(load_config(master / "config")) as c:
        for name in ("a" * 5000, "%00", "a%00b"):
            r = await c.get(f"/static/{name}")
            assert r.status_code == 404, name[:20]
        assert (await c.get("/static/app.css")).status_code in (200, 404)  # the route still answers


async def test_stream_last_event_id_in_non_ascii_digits_starts_from_now(master):
    """"²" passes str.isdigit() but not int(): it was a 500 instead of a fresh start."""
    async with serving(load_config(master / "config")) as c:
        newest = await asyncio.to_thread(c.ctx.db_sync, c.ctx.store.max_rowid)
        for last in (b"\xb2", b"\xd9\xa3", b"-1", b"x" * 50):
            async with c.stream("GET", "/api/v1/stream", params={"q": "topic:kursk"},
                                headers={"Last-Event-ID": last}) as r:
                assert r.status_code == 200, last
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        assert json.loads(line[5:])["after"] == newest
                        break


@pytest.mark.parametrize("q", ["كورسك\x01", "كورسك \x0b", "topic:kursk \x1f"])
async def test_atom_of_a_query_with_control_characters_is_valid_xml(master, q):
    """lxml refuses C0 controls: a query holding one made /feeds/search.atom a 500."""
    async with serving(load_config(master / "config")) as c:
        r = await c.get("/feeds/search.atom", params={"q": q})
        assert r.status_code == 200, r.text[:300]
        root = etree.fromstring(r.content)  # well-formed
        assert root.tag.endswith("feed") and "كورسك" in r.text or "kursk" in r.text


async def test_subscription_name_with_control_characters_still_gives_an_atom_feed(private):
    async with serving(private) as c:
        r = await c.post("/api/v1/subscriptions", json={"id": "ctl", "name": "bad\x00name\x07",
                                                        "query": "topic:kursk", "channels": ["hook"]})
        assert r.status_code == 201, r.text
        feed = await c.get("/feeds/subscriptions/ctl.atom")
        assert feed.status_code == 200, feed.text[:300]
        assert feedparser.parse(feed.content).feed.title.startswith("Raqib: bad")
        assert json.loads((await c.get("/feeds/subscriptions/ctl.json")).text)["items"]


async def test_feed_outputs_carry_only_http_links(master):
    """A feed's javascript: link stays text on the pages; in Atom and JSON Feed it was a
    clickable link in the subscriber's reader."""
    async with serving(load_config(master / "config")) as c:
        hit = (await c.get("/api/v1/search", params={"q": "topic:kursk", "limit": 1})).json()["hits"][0]
    evil = hit | {"link": "javascript:alert(document.cookie)", "title": "<script>alert(1)</script>"}
    good = hit | {"id": hit["id"] + "x"}
    bare = hit | {"id": hit["id"] + "y", "link": ""}  # no link at all: feedgen refused the entry
    parsed = feedparser.parse(atom("t", "http://127.0.0.1/feeds/search.atom", "urn:t", [evil, good, bare]))
    assert len(parsed.entries) == 3 and not parsed.bozo
    links = [lnk["href"] for e in parsed.entries for lnk in e.get("links", [])]
    assert links == [good["link"]]
    assert parsed.entries[0].title == "<script>alert(1)</script>"  # escaped text, not markup
    items = json_feed("t", "http://127.0.0.1/feeds/search.json", [evil, good])["items"]
    assert [i["url"] for i in items] == [None, good["link"]]


@pytest.mark.parametrize("sub_id", ["a/b", "a\\b", "\x00", "x\u202e", " pad", "zero\u200bwidth", ""])
async def test_subscription_ids_that_cannot_be_addressed_are_refused(private, sub_id):
    """An id with a slash could be created but never fetched, edited or removed through
    /api/v1/subscriptions/<id>; control and bidi characters hide what an id says."""
    async with serving(private) as c:
        r = await c.post("/api/v1/subscriptions", json={"id": sub_id, "query": "topic:kursk", "channels": ["hook"]})
        body = assert_problem(r, 422)
        assert body["detail"].startswith("id:")
        assert sub_id not in [s["id"] for s in (await c.get("/api/v1/subscriptions")).json()["subscriptions"]]


async def test_arabic_subscription_id_round_trips_through_the_path(private):
    async with serving(private) as c:
        r = await c.post("/api/v1/subscriptions", json={"id": "كورسك-عاجل", "query": "topic:kursk",
                                                        "channels": ["hook"]})
        assert r.status_code == 201, r.text
        assert (await c.get("/api/v1/subscriptions/كورسك-عاجل")).json()["query"] == "topic:kursk"
        assert (await c.get("/feeds/subscriptions/كورسك-عاجل.atom")).status_code == 200
        assert (await c.delete("/api/v1/subscriptions/كورسك-عاجل")).status_code == 204


async def test_a_request_body_over_the_limit_is_413_problem_json(master):
    """Without a cap, a client made the server hold any size of JSON (or spool any size of
    multipart to disk) before a handler could refuse it."""
    from raqib.web.app import MAX_BODY

    async def chunks():
        for _ in range(MAX_BODY // 2**20 + 2):
            yield b"x" * 2**20

    async with serving(load_config(master / "config")) as c:
        for url in ("/api/v1/topics/tag", "/feeds/import", "/login"):
            r = await c.post(url, content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"})
            assert "limited" in assert_problem(r, 413)["detail"], url
        r = await c.post("/api/v1/topics/tag", content=chunks(), headers={"content-type": "application/json"})
        assert "limited" in assert_problem(r, 413)["title"]
        ok = await c.post("/api/v1/topics/tag", json={"text": "سقوط الطائرة قرب كورسك"})
        assert ok.status_code == 200 and "kursk" in ok.json()["topics"]
