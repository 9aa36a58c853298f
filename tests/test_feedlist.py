"""Feeds in the database: feeds.yaml imported as file-managed, the CLI's feed and subscription
commands, hostile OPML, and a real `raqib run` that notices feeds added, edited and removed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from monitor import feedlist
from monitor.config import FeedConfig
from monitor.store import Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import ROOT, write_config
from tests.helpers import stop_service, wait_until


def raqib(*args: str, stdin: str | bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raqib.cli", *args], input=stdin, capture_output=True,
                          text=not isinstance(stdin, bytes), cwd=ROOT, timeout=timeout)


def _one_line(r: subprocess.CompletedProcess, code: int, *says: str) -> None:
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert r.returncode == code, (r.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for s in says:
        assert s in err, err


def test_feeds_yaml_is_imported_as_file_managed_and_removal_from_the_file_removes(tmp_path):
    store = Store(tmp_path / "raqib.db")
    a, b = FeedConfig(id="a", url="https://e.org/a"), FeedConfig(id="b", url="https://e.org/b")
    feedlist.sync_from_config(store, [a, b])
    feedlist.add(store, {"id": "mine", "url": "https://e.org/mine"})
    v = feedlist.version(store)
    feedlist.sync_from_config(store, [a, b])
    assert feedlist.version(store) == v  # nothing changed, nothing written: the service stays put
    feedlist.sync_from_config(store, [a])
    assert {f.id: f.origin for f in feedlist.load(store)} == {"a": "file", "mine": "cli"}
    assert feedlist.version(store) != v
    # a file feed takes over a database one with the same id or url
    feedlist.sync_from_config(store, [a, FeedConfig(id="mine2", url="https://e.org/mine")])
    assert {f.id: f.origin for f in feedlist.load(store)} == {"a": "file", "mine2": "file"}
    with pytest.raises(feedlist.FeedListError, match="defined in feeds.yaml") as e:
        feedlist.set_enabled(store, "mine2", False)
    assert e.value.kind == "managed"
    assert feedlist.effective(store, [a]) == [a]  # a start from this feeds.yaml drops mine2
    store.close()


def test_cli_feed_commands_follow_the_rules(tmp_path):
    cfg = write_config(tmp_path, [("filefeed", "https://file.example.org/rss")])
    c = ("--config", str(cfg))
    r = raqib("feeds", "add", "extra", "https://extra.example.org/rss", "--name", "Extra", *c)
    assert r.returncode == 0 and "added extra" in r.stdout, r.stderr
    _one_line(raqib("feeds", "add", "extra", "https://x.example.org/rss", *c), 2, "exists", "--replace")
    assert raqib("feeds", "add", "extra", "https://x.example.org/rss", "--replace", *c).returncode == 0
    _one_line(raqib("feeds", "add", "other", "https://x.example.org/rss", *c), 2, "already polls this url")
    _one_line(raqib("feeds", "add", "bad", "https://u:hunter2@x.example.org/rss", *c), 2, "credentials")
    _one_line(raqib("feeds", "add", "Bad Id", "https://y.example.org/rss", *c), 2, "id:")
    _one_line(raqib("feeds", "remove", "filefeed", *c), 2, "feeds.yaml")
    _one_line(raqib("feeds", "disable", "filefeed", *c), 2, "feeds.yaml")
    _one_line(raqib("feeds", "remove", "nosuch", *c), 1, "no feed 'nosuch'")
    assert raqib("feeds", "disable", "extra", *c).returncode == 0
    rows = {r["id"]: r for r in json.loads(raqib("feeds", "list", "--json", *c).stdout)}
    assert rows["filefeed"]["managed_by"] == "feeds.yaml" and rows["extra"]["origin"] == "cli"
    assert rows["extra"]["enabled"] is False and rows["extra"]["url"] == "https://x.example.org/rss"

    out = tmp_path / "out.opml"
    assert raqib("feeds", "export", str(out), *c).returncode == 0
    assert raqib("feeds", "remove", "extra", *c).returncode == 0
    r = raqib("feeds", "import", str(out), "--json", *c)
    assert r.returncode == 1  # filefeed is skipped (feeds.yaml): said, and the exit says so
    rep = json.loads(r.stdout)
    assert rep["added"] == ["extra"] and len(rep["skipped"]) == 1 and "feeds.yaml" in rep["skipped"][0]
    rows = {r["id"]: r for r in json.loads(raqib("feeds", "list", "--json", *c).stdout)}
    assert rows["extra"]["enabled"] is False  # disabled survives the round trip


@pytest.mark.parametrize("doc, says", [
    (b'<?xml version="1.0"?><!DOCTYPE opml SYSTEM "http://127.0.0.1:9/x.dtd"><opml/>', "DOCTYPE"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     b'<opml><body><outline text="&xxe;" xmlUrl="https://e.org/r"/></body></opml>', "DOCTYPE"),
    (b"\x00\x01 garbage", "not well-formed"),
    (b"<html><body>not opml</body></html>", "not an OPML document"),
    (b"", "OPML"),
])
def test_hostile_opml_is_one_clear_line(tmp_path, doc, says):
    cfg = write_config(tmp_path, [])
    r = raqib("feeds", "import", "-", "--config", str(cfg), stdin=doc)
    _one_line(r, 2, says)
    store = Store(tmp_path / "data" / "raqib.db")
    assert feedlist.load(store) == []
    store.close()


def test_opml_size_and_outline_caps(tmp_path):
    store = Store(tmp_path / "raqib.db")
    with pytest.raises(feedlist.FeedListError, match="larger than"):
        feedlist.import_opml(store, b"<opml>" + b" " * feedlist.OPML_MAX_BYTES + b"</opml>")
    many = "".join(f'<outline xmlUrl="https://e.org/{i}" text="f{i}"/>' for i in range(feedlist.OPML_MAX_OUTLINES + 1))
    with pytest.raises(feedlist.FeedListError, match="at most"):
        feedlist.import_opml(store, f"<opml><body>{many}</body></opml>".encode())
    assert feedlist.load(store) == []
    store.close()


async def test_run_and_once_need_an_enabled_feed_in_the_file_or_the_database(tmp_path, feed_server):
    feed_server.set_feed("/db.xml", rss([rss_item("قمة الناتو", "https://n.example.org/1", "الناتو")]))
    cfg = write_config(tmp_path, [])  # an empty feeds.yaml is fine now
    _one_line(raqib("once", "--config", str(cfg)), 2, "no enabled feed")
    assert raqib("feeds", "add", "dbfeed", feed_server.url("/db.xml"), "--config", str(cfg)).returncode == 0
    # the feed server runs on this test's loop: the CLI runs beside it, not blocking it
    r = await asyncio.to_thread(raqib, "once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["feeds"] == 1 and summary["new"] == 1
    assert raqib("feeds", "disable", "dbfeed", "--config", str(cfg)).returncode == 0
    _one_line(raqib("once", "--config", str(cfg)), 2, "no enabled feed")


def test_cli_subscriptions_pause_resume_and_managed_refusals(tmp_path):
    cfg = write_config(tmp_path, [], channels={"log": {"type": "log"}},
                       subscriptions=[{"id": "managed", "query": "كورسك", "channels": ["log"]}])
    c = ("--config", str(cfg))
    assert raqib("subscriptions", "add", "s1", "الناتو", "--channel", "log", "--yes", *c).returncode == 0
    assert raqib("subscriptions", "pause", "s1", *c).returncode == 0
    listed = {s["id"]: s for s in json.loads(raqib("subscriptions", "list", "--json", *c).stdout)}
    assert listed["s1"]["paused"] is True and listed["s1"]["origin"] == "cli"
    assert raqib("subscriptions", "resume", "s1", *c).returncode == 0
    listed = {s["id"]: s for s in json.loads(raqib("subscriptions", "list", "--json", *c).stdout)}
    assert listed["s1"]["paused"] is False
    _one_line(raqib("subscriptions", "add", "managed", "الناتو", "--channel", "log", "--yes", "--replace", *c),
              2, "alerts.yaml")
    _one_line(raqib("subscriptions", "pause", "nosuch", *c), 1, "no subscription 'nosuch'")
    _one_line(raqib("subscriptions", "remove", "nosuch", *c), 1, "no subscription 'nosuch'")
    assert raqib("subscriptions", "remove", "s1", *c).returncode == 0


async def _cli(*args: str) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return proc.returncode


async def test_running_service_schedules_added_retimes_edited_and_drops_removed_feeds(tmp_path, feed_server):
    """A real `raqib run`: a feed added by the CLI is polled within seconds; an edited interval
    re-times its job; a removed one is no longer polled."""
    feed_server.set_feed("/file.xml", rss([rss_item("قمة الناتو", "https://n.example.org/1", "الناتو")]))
    feed_server.set_feed("/added.xml", rss([rss_item("كورسك", "https://n.example.org/2", "كورسك")]))
    cfg = write_config(tmp_path, [("filefeed", feed_server.url("/file.xml"))])
    log = open(tmp_path / "service.log", "ab")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg),
                                                cwd=ROOT, stdout=log, stderr=log, env=dict(os.environ))
    log.close()
    try:
        await wait_until(lambda: feed_server.hits["/file.xml"] >= 1, 30, "the file feed's first poll")
        await _cli("feeds", "add", "added", feed_server.url("/added.xml"), "--config", str(cfg))
        await wait_until(lambda: feed_server.hits["/added.xml"] >= 1, 30, "the added feed's first poll")
        await asyncio.sleep(1)
        assert feed_server.hits["/added.xml"] == 1  # default interval (600 s): once, until edited
        store = Store(tmp_path / "data" / "raqib.db")
        try:
            feedlist.edit(store, "added", {"interval": 1})  # what the API and pages call
        finally:
            store.close()
        await wait_until(lambda: feed_server.hits["/added.xml"] >= 3, 30, "polls at the edited 1 s interval")
        await _cli("feeds", "remove", "added", "--config", str(cfg))
        await asyncio.sleep(4)  # the watcher checks every 2 s; a poll in flight may still finish
        settled = feed_server.hits["/added.xml"]
        await asyncio.sleep(3)
        assert feed_server.hits["/added.xml"] == settled
        text = (tmp_path / "service.log").read_text(encoding="utf-8")
        assert "feed unscheduled" in text
    finally:
        await stop_service(proc)
    assert proc.returncode == 0
