"""The feeds and subscriptions API (/api/v1/feeds, /api/v1/subscriptions) over a real data dir:
a real pipeline polls a local feed server, the app runs on httpx's ASGI transport, test sends
reach a local webhook receiver."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from monitor import feedlist
from monitor.config import load_config
from monitor.store import Store
from raqib.pipeline import Pipeline
from raqib.service import start
from raqib.web.app import create_app
from raqib.web.context import WebContext
from tests.corpus import rss, rss_item
from tests.e2e_setup import write_config

NATO = [rss_item(f"قمة الناتو رقم {i}", f"https://news.example.org/nato/{i}", f"اجتمع قادة حلف الناتو للمرة {i}")
        for i in range(6)]
OTHER = [rss_item(f"أخبار الطقس {i}", f"https://news.example.org/weather/{i}", "أمطار غزيرة") for i in range(3)]


@contextlib.asynccontextmanager
async def served(tmp_path, feed_server, webhook_receiver, monkeypatch, read_only: bool = False):
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "s3cret")
    feed_server.set_feed("/file.xml", rss(NATO))
    feed_server.set_feed("/extra.xml", rss(OTHER))
    cfg = write_config(
        tmp_path, [("filefeed", feed_server.url("/file.xml"))],
        channels={"hook": {"type": "webhook", "url": webhook_receiver.url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "managed", "query": "كورسك", "channels": ["hook"]}])
    config = load_config(cfg)
    async with Pipeline(config) as p:
        await start(p)
        await p.poll_all(feedlist.enabled(p.store))
        await p.drain()
        ctx = WebContext(config, Store(config.data_dir / "raqib.db"), p.index, None if read_only else p)
        app = create_app(ctx)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://raqib.test") as c:
                yield c
        finally:
            ctx.close()


def _problem(r: httpx.Response, status: int, *says: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    for s in says:
        assert s in body["detail"], body
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    return body


async def test_feed_list_with_status_and_the_rules_of_ownership(tmp_path, feed_server, webhook_receiver,
                                                                monkeypatch):
    async with served(tmp_path, feed_server, webhook_receiver, monkeypatch) as c:
        feeds = (await c.get("/api/v1/feeds")).json()["feeds"]
        assert [f["id"] for f in feeds] == ["filefeed"]
        f = feeds[0]
        assert f["managed_by"] == "feeds.yaml" and f["articles"] == 6 and f["last_poll"] and f["next_due"]
        assert f["errors_in_a_row"] == 0 and f["last_error"] is None
        assert f["http_status"] == 200 and f["items"] == 6

        new = {"id": "extra", "url": feed_server.url("/extra.xml"), "name": "الطقس", "language": "ar"}
        r = await c.post("/api/v1/feeds", json=new)
        assert r.status_code == 201, r.text
        assert r.json()["origin"] == "api" and r.json()["managed_by"] is None and r.json()["last_poll"] is None
        _problem(await c.post("/api/v1/feeds", json=new), 409, "exists")
        _problem(await c.post("/api/v1/feeds", json={**new, "id": "extra2"}), 409, "'extra' already polls this url")
        r = await c.post("/api/v1/feeds?replace=true", json={**new, "name": "weather"})
        assert r.status_code == 201 and r.json()["name"] == "weather"

        # the same validation as feeds.yaml: one line, no secret echoed
        body = _problem(await c.post("/api/v1/feeds", json={"id": "x", "url": "https://u:hunter2@e.org/rss"}),
                        422, "credentials")
        assert "hunter2" not in body["detail"]
        _problem(await c.post("/api/v1/feeds", json={"id": "Bad Id", "url": "https://e.org/rss"}), 422, "id:")
        _problem(await c.post("/api/v1/feeds", json={"id": "x", "url": "file:///etc/passwd"}), 422, "url")

        # what feeds.yaml defines is changed there
        for r in (await c.delete("/api/v1/feeds/filefeed"), await c.post("/api/v1/feeds/filefeed/disable"),
                  await c.patch("/api/v1/feeds/filefeed", json={"name": "x"}),
                  await c.post("/api/v1/feeds?replace=true", json={"id": "filefeed", "url": "https://e.org/a"})):
            _problem(r, 409, "feeds.yaml")

        r = await c.patch("/api/v1/feeds/extra", json={"interval": 900})
        assert r.status_code == 200 and r.json()["interval"] == 900
        _problem(await c.patch("/api/v1/feeds/extra", json={"interval": -1}), 422, "interval")
        assert (await c.post("/api/v1/feeds/extra/disable")).json()["enabled"] is False
        assert (await c.post("/api/v1/feeds/extra/enable")).json()["enabled"] is True
        assert (await c.delete("/api/v1/feeds/extra")).status_code == 204
        _problem(await c.get("/api/v1/feeds/extra"), 404, "extra")
        _problem(await c.delete("/api/v1/feeds/extra"), 404)


async def test_poll_now_runs_the_pipeline_and_is_refused_without_a_poller(tmp_path, feed_server,
                                                                          webhook_receiver, monkeypatch):
    async with served(tmp_path, feed_server, webhook_receiver, monkeypatch) as c:
        await c.post("/api/v1/feeds", json={"id": "extra", "url": feed_server.url("/extra.xml")})
        r = await c.post("/api/v1/feeds/extra/poll")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok" and r.json()["new"] == 3 and r.json()["error"] is None
        assert feed_server.hits["/extra.xml"] == 1
        assert (await c.get("/api/v1/feeds/extra")).json()["articles"] == 3
        _problem(await c.post("/api/v1/feeds/nosuch/poll"), 404)
        feed_server.set_status("/extra.xml", 404)
        r = await c.post("/api/v1/feeds/extra/poll")
        assert r.json()["status"] == "error" and "404" in r.json()["error"]
        f = (await c.get("/api/v1/feeds/extra")).json()
        assert (f["http_status"], f["items"], f["errors_in_a_row"]) == (404, 3, 1) and f["backing_off_until"]
    async with served(tmp_path / "ro", feed_server, webhook_receiver, monkeypatch, read_only=True) as c:
        _problem(await c.post("/api/v1/feeds/filefeed/poll"), 409, "raqib web")


OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>mine</title></head><body>
  <outline text="Folder">
    <outline type="rss" text="Al Example" xmlUrl="https://ar.example.org/rss.xml"/>
    <outline type="rss" text="Bad scheme" xmlUrl="ftp://ar.example.org/rss.xml"/>
    <outline type="rss" text="Secret" xmlUrl="https://me:pw@ar.example.org/x.xml"/>
  </outline>
  <outline type="rss" text="Al Example" xmlUrl="https://other.example.org/rss.xml"/>
</body></opml>"""


async def test_opml_import_and_export(tmp_path, feed_server, webhook_receiver, monkeypatch):
    async with served(tmp_path, feed_server, webhook_receiver, monkeypatch) as c:
        r = await c.post("/api/v1/feeds/import", content=OPML, headers={"content-type": "text/x-opml"})
        assert r.status_code == 200, r.text
        rep = r.json()
        assert rep["added"] == ["al-example"] and rep["replaced"] == []
        assert len(rep["skipped"]) == 3
        assert "outline 2 (Bad scheme)" in rep["skipped"][0] and "url" in rep["skipped"][0]
        assert "credentials" in rep["skipped"][1] and "pw@" not in rep["skipped"][1]
        assert "twice" in rep["skipped"][2]
        again = (await c.post("/api/v1/feeds/import", content=OPML)).json()
        assert again["added"] == [] and "exists" in again["skipped"][0]

        out = await c.get("/api/v1/feeds/export")
        assert out.status_code == 200 and out.headers["content-type"].startswith("text/x-opml")
        assert b'xmlUrl="https://ar.example.org/rss.xml"' in out.content
        assert feed_server.url("/file.xml").encode() in out.content

        bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                b'<opml><body><outline xmlUrl="https://e.org/&lol2;"/></body></opml>')
        _problem(await c.post("/api/v1/feeds/import", content=bomb), 422, "DOCTYPE")
        _problem(await c.post("/api/v1/feeds/import", content=b"<rss/>"), 422, "not an OPML")
        _problem(await c.post("/api/v1/feeds/import", content=b"<opml><body>"), 422, "not well-formed")
        _problem(await c.post("/api/v1/feeds/import", content=b" " * (2 * 1024 * 1024 + 10)), 413)


async def test_subscriptions_crud_preview_pause_test_send_and_log(tmp_path, feed_server, webhook_receiver,
                                                                  monkeypatch):
    async with served(tmp_path, feed_server, webhook_receiver, monkeypatch) as c:
        r = await c.post("/api/v1/subscriptions/preview", json={"query": "الناتو", "limit": 2})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 6 and len(r.json()["examples"]) == 2
        _problem(await c.post("/api/v1/subscriptions/preview", json={"query": "topic:natoo"}), 422, "unknown topic")
        _problem(await c.post("/api/v1/subscriptions/preview", json={"query": "(الناتو"}), 422)

        sub = {"id": "nato", "query": "الناتو", "channels": ["hook"], "throttle": {"max": 5, "per": 60}}
        r = await c.post("/api/v1/subscriptions", json=sub)
        assert r.status_code == 201, r.text
        assert r.json() | {"created": None} == {
            "id": "nato", "name": "nato", "query": "الناتو", "channels": ["hook"], "throttle_max": 5, "throttle_per": 60,
            "digest_minutes": 0, "backfill": False, "paused": False, "origin": "api", "managed_by": None,
            "created": None}
        _problem(await c.post("/api/v1/subscriptions", json=sub), 409, "exists")
        _problem(await c.post("/api/v1/subscriptions", json={**sub, "id": "y", "channels": ["nope"]}), 422,
                 "unknown channel 'nope'")
        _problem(await c.post("/api/v1/subscriptions", json={**sub, "id": "y", "query": "source:nosuch"}), 422,
                 "unknown source")
        _problem(await c.post("/api/v1/subscriptions", json={**sub, "id": "y", "digest_minutes": -1}), 422,
                 "digest_minutes")
        _problem(await c.put("/api/v1/subscriptions/managed", json=sub | {"id": None}), 409, "alerts.yaml")
        _problem(await c.delete("/api/v1/subscriptions/managed"), 409, "alerts.yaml")

        assert (await c.post("/api/v1/subscriptions/nato/pause")).json()["paused"] is True
        r = await c.put("/api/v1/subscriptions/nato", json={**sub, "query": "قمة الناتو"})
        assert r.json()["query"] == "قمة الناتو" and r.json()["paused"] is True  # an edit keeps the switch
        assert (await c.post("/api/v1/subscriptions/nato/resume")).json()["paused"] is False
        assert (await c.get("/api/v1/subscriptions/nato/preview")).json()["total"] == 6
        listed = {s["id"]: s for s in (await c.get("/api/v1/subscriptions")).json()["subscriptions"]}
        assert listed["managed"]["managed_by"] == "alerts.yaml" and listed["nato"]["origin"] == "api"

        r = await c.post("/api/v1/subscriptions/nato/test")
        assert r.status_code == 200, r.text
        assert r.json()["channels"] == {"hook": "sent"} and r.json()["article_id"]
        assert len(webhook_receiver.deliveries) == 1
        assert "الناتو" in webhook_receiver.items()[0]["title"]

        # the delivery log comes from the outbox: a newly polled matching article alerts
        feed_server.set_feed("/file.xml", rss(NATO + [rss_item("الناتو يجتمع اليوم", "https://news.example.org/n",
                                                              "قمة الناتو الجديدة")]))
        r = await c.post("/api/v1/feeds/filefeed/poll")
        assert r.json()["new"] == 1, r.text
        log = (await c.get("/api/v1/subscriptions/nato/deliveries")).json()["deliveries"]
        assert [(d["channel"], d["status"]) for d in log] == [("hook", "pending")]
        _problem(await c.get("/api/v1/subscriptions/nosuch/deliveries"), 404)

        assert (await c.delete("/api/v1/subscriptions/nato")).status_code == 204
        _problem(await c.get("/api/v1/subscriptions/nato"), 404)
        _problem(await c.delete("/api/v1/subscriptions/nato"), 404)


@pytest.mark.parametrize("path", ["/api/v1/feeds", "/api/v1/subscriptions"])
async def test_unknown_fields_are_refused(tmp_path, feed_server, webhook_receiver, monkeypatch, path):
    async with served(tmp_path, feed_server, webhook_receiver, monkeypatch) as c:
        r = await c.post(path, json={"id": "x", "url": "https://e.org/r", "query": "x", "channels": ["hook"],
                                     "surprise": 1})
        assert r.status_code == 422
