"""End to end on real local servers: poll → tag → index → search → alert, and bad feeds."""

from __future__ import annotations

import logging

import pytest

from alerts.channels import verify_signature
from indexers.tantivy_index import TantivyIndex
from monitor.arabic import forms, query_key, tokens
from monitor.config import load_config
from raqib.service import run_once
from tests.corpus import ant_item, rss, rss_item, seed_text, topical_docs
from tests.e2e_setup import write_config

SECRET = "e2e-webhook-secret"
SEED_TITLE = "روتي: على الناتو التركيز على دعم أوكرانيا عسكريا"


def seed_feed() -> bytes:
    items = [rss_item(SEED_TITLE, "https://example.org/nato-rutte?utm_source=rss",
                      seed_text(), "Tue, 03 Dec 2024 10:00:00 GMT", guid="seed-0001")]
    items += [ant_item(d, full_text=False) for d in topical_docs()[:20]]
    return rss(items, title="أخبار")


def atom_feed() -> bytes:
    return ("""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ar"><title>أطلس</title><id>urn:t</id>
<updated>2024-12-03T10:00:00Z</updated>
<entry><title>قمة حلف شمال الأطلسي في لاهاي</title><id>urn:atom:1</id>
<link href="https://example.org/atom-1"/><updated>2024-12-03T09:00:00Z</updated>
<content type="html">&lt;p&gt;اجتمع وزراء &lt;b&gt;الناتو&lt;/b&gt; &amp;amp; شركاؤهم&lt;/p&gt;</content></entry>
</feed>""").encode()


def malformed_feed() -> bytes:
    return ("""<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>x</title>
<item><title>معارك في كورسك</title><link>https://example.org/m1</link>
<description>تقدم القوات في منطقة كورسك &nbsp; & غيرها</description></item>
<item><title>خبر ثان<title><link>https://example.org/m2</link></item>
""").encode()


@pytest.fixture
def env_secret(monkeypatch):
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", SECRET)


async def test_poll_tag_index_search_alert(tmp_path, feed_server, webhook_receiver, env_secret, caplog):
    caplog.set_level(logging.INFO)
    docs = topical_docs()
    cp1256_items = [ant_item(d, full_text=False) for d in docs[20:30]]
    feed_server.set_feed("/seed.xml", seed_feed())
    feed_server.set_feed("/cp1256.xml", rss(cp1256_items, encoding="windows-1256"),
                         content_type="application/rss+xml")
    header_items = [ant_item(d, full_text=False) for d in docs[35:40]]
    feed_server.set_feed("/cp1256-header.xml", rss(header_items, encoding="windows-1256", declare=False),
                         content_type="application/rss+xml; charset=windows-1256")
    feed_server.set_feed("/atom.xml", atom_feed(), content_type="application/atom+xml")
    feed_server.set_feed("/broken.xml", malformed_feed())
    feed_server.set_feed("/gzip.xml", rss([ant_item(d) for d in docs[30:33]]), gzip=True)
    feed_server.set_slow("/slow.xml", 5.0, rss([]))
    feed_server.set_status("/error500.xml", 500)
    feed_server.set_status("/busy.xml", 429, headers={"Retry-After": "120"})
    feed_server.set_oversize("/huge.xml", 3_000_000)
    feed_server.set_redirect("/loop-a.xml", "/loop-b.xml")
    feed_server.set_redirect("/loop-b.xml", "/loop-a.xml")
    feed_server.set_gzip_bomb("/bomb.xml", 200_000_000)
    feed_server.set_feed("/notafeed.html", b"<html><body>hello</body></html>", content_type="text/html")
    names = ["seed", "cp1256", "cp1256-header", "atom", "broken", "gzip", "slow", "error500", "busy",
             "huge", "loop-a", "bomb", "notafeed"]
    feeds = [(n, feed_server.url(f"/{n}.{'html' if n == 'notafeed' else 'xml'}")) for n in names]
    cfg_dir = write_config(
        tmp_path, feeds,
        channels={"hook": {"type": "webhook", "url": webhook_receiver.url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "nato-watch", "name": "الناتو", "query": "الناتو", "channels": ["hook"],
                        "backfill": True},
                       {"id": "memo", "query": '"مذكرة بودابست" topic:kursk', "channels": ["hook"], "backfill": True}])
    config = load_config(cfg_dir)

    reports, drained, delivered = await run_once(config)
    by = {r.feed_id: r for r in reports}

    # good feeds
    assert by["seed"].status == "ok" and by["seed"].new == 21
    assert by["cp1256"].encoding == "windows-1256" and by["cp1256"].new == 10
    assert by["cp1256-header"].encoding == "windows-1256" and by["cp1256-header"].new == 5
    assert by["atom"].new == 1 and by["gzip"].new == 3
    assert by["broken"].status == "ok" and by["broken"].new >= 1 and by["broken"].warnings
    # bad feeds: a clear error each, the others carried on
    assert by["slow"].status == "error" and "timed out" in by["slow"].error
    assert by["error500"].status == "error" and "500" in by["error500"].error
    assert by["busy"].status == "retry-later"
    assert (by["busy"].next_due - by["busy"].next_due.now(by["busy"].next_due.tzinfo)).total_seconds() > 100
    assert by["huge"].status == "error" and "too large" in by["huge"].error.lower()
    assert by["loop-a"].status == "error" and "redirect" in by["loop-a"].error.lower()
    assert by["bomb"].status == "error" and "too large" in by["bomb"].error.lower()
    assert by["notafeed"].status == "error" and "not a feed" in by["notafeed"].error
    errors = {r.feed: r for r in caplog.records if r.levelno >= logging.ERROR and hasattr(r, "feed")}
    for n in ("slow", "error500", "huge", "loop-a", "bomb", "notafeed", "busy"):
        assert errors[n].error == by[n].error and errors[n].url == by[n].url
    assert any(getattr(r, "feed", None) == "broken" and r.levelno == logging.WARNING for r in caplog.records)

    # search: the seed article is tagged with all three topics and found by الناتو
    index = TantivyIndex(config.data_dir / "raqib.db")
    page = await index.search("الناتو", limit=100)
    seed_hits = [h for h in page.hits if h.article.title == SEED_TITLE]
    assert len(seed_hits) == 1
    assert set(seed_hits[0].article.topics) == {"nato", "kursk", "budapest_memorandum"}
    h0 = seed_hits[0]
    assert "الناتو" in [h0.article.title[m.start:m.end] for m in h0.title_marks]
    assert seed_hits[0].article.link == "https://example.org/nato-rutte?utm_source=rss"
    cp = await index.search("source:cp1256 -source:cp1256-header", limit=50)
    assert {h.article.title for h in cp.hits} == {d.title for d in docs[20:30]}  # no mojibake
    hdr = await index.search("source:cp1256-header", limit=50)
    assert {h.article.title for h in hdr.hits} == {d.title for d in docs[35:40]}
    await index.close()

    # alerts: delivered once, signed, Arabic intact
    items = webhook_receiver.items()
    seed_alerts = [i for i in items if i["title"] == SEED_TITLE and i["subscription_id"] == "nato-watch"]
    assert len(seed_alerts) == 1
    # the snippet is a window of the article's own text whose marks (offsets) are its mentions
    # of الناتو (any clitic form), not any text with a «
    snip = seed_alerts[0]["snippet"]
    marked = [snip["text"][m["start"]:m["end"]] for m in snip["marks"]]
    assert marked and all(query_key("الناتو") in forms(t) for m in marked for t in tokens(m)), snip
    plain = " ".join(snip["text"].split())
    body = " ".join(seed_text().split())
    assert len(plain) > 100 and plain in body, snip
    memo = [i for i in items if i["subscription_id"] == "memo"]
    assert [m["title"] for m in memo] == [SEED_TITLE]
    for d in webhook_receiver.deliveries:
        h = {k.lower(): v for k, v in d["headers"].items()}
        assert verify_signature(SECRET, h["x-raqib-timestamp"], d["body"], h["x-raqib-signature"])
    assert delivered.failures == 0
    n_alerts = len(items)

    # second poll: conditional GET answers 304, nothing new, nothing alerted twice
    reports2, drained2, delivered2 = await run_once(config)
    by2 = {r.feed_id: r for r in reports2}
    assert by2["seed"].status == "not-modified"
    assert by2["cp1256"].status == "not-modified"
    assert sum(r.new for r in reports2) == 0
    assert len(webhook_receiver.items()) == n_alerts
    assert by2["busy"].status == "backing-off"  # Retry-After is honoured across runs
    assert feed_server.hits["/busy.xml"] == 1
