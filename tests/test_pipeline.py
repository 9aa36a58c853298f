"""Dedup, updates, schedule decisions and subscriptions, through the real pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

from indexers.tantivy_index import TantivyIndex
from monitor import intervals
from monitor.config import ScheduleConfig, load_config
from monitor.dedup import decide
from raqib.service import run_once
from monitor.store import Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import ROOT, write_config
from tests.helpers import make_article


def test_decide_new_updated_unchanged_and_cross_feed_links():
    a = make_article("أ", "نص", link="https://x.org/1?utm_source=rss")
    b = make_article("ب", "نص", link="https://x.org/2")
    changed = make_article("ب", "نص معدل", link="https://x.org/2")
    d = decide([a, b, a], {b.id: b.content_hash}, {})
    assert d.new == (a,) and d.updated == () and d.unchanged == 2
    d = decide([changed], {b.id: b.content_hash}, {})
    assert d.updated == (changed,)
    # the same story under another id, already stored from another feed
    other = make_article("أ", "نص", link="https://x.org/1?utm_medium=feed")
    d = decide([other], {}, {"https://x.org/1": "someone-else"})
    assert d.new == () and d.unchanged == 1


def test_adaptive_interval_and_error_backoff():
    s = ScheduleConfig(default_interval=900, min_interval=120, max_interval=3600)
    busy = intervals.next_interval(900, 10, s)
    idle = intervals.next_interval(900, 0, s)
    assert busy < 900 < idle
    assert intervals.next_interval(130, 10, s) == 120            # never below the floor
    assert intervals.next_interval(3500, 0, s) == 3600           # never above the ceiling
    assert intervals.next_interval(120, 10, s, ttl_seconds=1800) == 1800  # the feed's <ttl>
    assert intervals.next_interval(900, 0, s, fixed=300) == 300
    assert intervals.error_delay(900, 1, s) == 900
    assert intervals.error_delay(900, 3, s) == 3600
    assert intervals.error_delay(900, 30, s) == s.error_backoff_max
    assert intervals.error_delay(900, 1, s, retry_after=7200) == 7200


async def test_changed_article_is_updated_not_duplicated_and_not_realerted(tmp_path, feed_server,
                                                                         webhook_receiver, monkeypatch):
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "x")
    item = rss_item("قمة الناتو", "https://example.org/a1", "اجتماع في لاهاي", guid="g-1")
    feed_server.set_feed("/a.xml", rss([item]))
    # the same story syndicated in a second feed, under another guid
    feed_server.set_feed("/b.xml", rss([rss_item("قمة الناتو", "https://example.org/a1?utm_source=b",
                                                 "اجتماع في لاهاي", guid="other-guid")]))
    cfg = load_config(write_config(
        tmp_path, [("a", feed_server.url("/a.xml")), ("b", feed_server.url("/b.xml"))],
        channels={"hook": {"type": "webhook", "url": webhook_receiver.url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "s", "query": "الناتو", "channels": ["hook"], "backfill": True}]))
    reports, _, _ = await run_once(cfg)
    assert sum(r.new for r in reports) == 1
    feed_server.set_feed("/a.xml", rss([rss_item("قمة الناتو", "https://example.org/a1",
                                                 "اجتماع في لاهاي لبحث دعم كورسك", guid="g-1")]))
    reports, drained, _ = await run_once(cfg)
    by = {r.feed_id: r for r in reports}
    assert by["a"].updated == 1 and by["a"].new == 0
    store = Store(cfg.data_dir / "raqib.db")
    assert store.count() == 1
    store.close()
    index = TantivyIndex(cfg.data_dir / "raqib.db")
    page = await index.search("كورسك")
    assert page.total == 1 and "كورسك" in page.hits[0].article.summary
    assert (await index.search("الناتو")).total == 1
    await index.close()
    assert len(webhook_receiver.items()) == 1  # the update did not alert the same rule again


async def test_subscription_add_previews_matches_before_saving(tmp_path, feed_server):
    feed_server.set_feed("/a.xml", rss([
        rss_item("اجتماع للناتو", "https://example.org/1", "نص", guid="1"),
        rss_item("معارك في كورسك", "https://example.org/2", "نص", guid="2"),
        rss_item("خبر آخر", "https://example.org/3", "نص", guid="3")]))
    cfg_dir = write_config(tmp_path, [("a", feed_server.url("/a.xml"))],
                           channels={"log": {"type": "log"}})
    await run_once(load_config(cfg_dir))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "raqib.cli", "subscriptions", *args, "--config", str(cfg_dir)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    r = cli("add", "watch", "الناتو OR كورسك", "--channel", "log", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "2 stored articles match" in r.stdout and "[للناتو]" in r.stdout  # piped: brackets
    assert "watch" not in cli("list").stdout
    r = cli("add", "watch", "الناتو OR كورسك", "--channel", "log", "--throttle", "5/3600", "--yes")
    assert r.returncode == 0 and "saved watch" in r.stdout
    listed = json.loads(cli("list", "--json").stdout)
    assert listed[0]["id"] == "watch" and listed[0]["throttle_max"] == 5
    r = cli("add", "bad", "(الناتو", "--channel", "log")
    assert r.returncode == 2 and "missing ')'" in r.stderr
    r = cli("add", "x", "الناتو", "--channel", "nope")
    assert r.returncode == 2 and "unknown channel 'nope'" in r.stderr
    assert cli("remove", "watch").returncode == 0
    assert json.loads(cli("list", "--json").stdout) == []


def test_published_time_in_future_or_missing_becomes_fetch_time():
    from monitor.parser import parse_feed

    now = datetime(2024, 12, 3, 12, tzinfo=UTC)
    body = rss([rss_item("أ", "https://e.org/1", "x", "Tue, 03 Dec 2030 10:00:00 GMT"),
                rss_item("ب", "https://e.org/2", "x"),
                rss_item("ج", "https://e.org/3", "x", "Tue, 03 Dec 2024 09:00:00 +0300")])
    arts = parse_feed(body, {}, "http://f", "f", now).articles
    assert [a.published for a in arts] == [now, now, datetime(2024, 12, 3, 6, tzinfo=UTC)]
