"""Durability, tested by killing the process: no article lost, no alert sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from indexers.tantivy_index import TantivyIndex
from monitor.parser import canonical_link
from tests.corpus import ant_item, rss, topical_docs
from tests.e2e_setup import ROOT, write_config
from tests.helpers import wait_until

N_FEEDS = 12
PER_FEED = 40


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


_STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def _no_service_outlives_its_test():
    """A failing assertion must not leave a `raqib run` behind (they ran on for hours)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass


async def _start(cfg: Path) -> asyncio.subprocess.Process:
    log = open(cfg.parent / "service.log", "ab")  # a file, not a pipe nobody drains
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg), cwd=ROOT,
            stdout=log, stderr=log, env={**os.environ, "RAQIB_TEST_HOOK_SECRET": "s3cret"})
        _STARTED.append(proc)
        return proc
    finally:
        log.close()


def _setup(tmp_path, feed_server, webhook_receiver):
    docs = topical_docs()
    assert len(docs) >= N_FEEDS * PER_FEED
    feeds = []
    for i in range(N_FEEDS):
        chunk = docs[i * PER_FEED:(i + 1) * PER_FEED]
        path = f"/f{i}.xml"
        if i % 3 == 0:  # some feeds answer slowly, so the kill lands while work is in flight
            feed_server.set_slow(path, 1.0, rss([ant_item(d) for d in chunk]))
        else:
            feed_server.set_feed(path, rss([ant_item(d) for d in chunk]))
        feeds.append((f"f{i}", feed_server.url(path)))
    cfg = write_config(
        tmp_path, feeds,
        channels={"hook": {"type": "webhook", "url": webhook_receiver.url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "watch", "query": QUERY, "channels": ["hook"], "backfill": True}],
        settings={"parse": {"workers": 2}, "fetch": {"read_timeout": 5, "total_timeout": 10}})
    # the same story under another guid in a second feed (same canonical link) is one article
    total = len({canonical_link(d.url) for d in docs[:N_FEEDS * PER_FEED]})
    return cfg, tmp_path / "data" / "raqib.db", total


QUERY = "topic:nato OR topic:kursk OR روسيا"


async def _finish(cfg, db, total, tmp_path) -> None:
    """Start once more, let all work finish, stop with SIGTERM; check nothing was lost."""
    proc = await _start(cfg)
    await wait_until(lambda: _count(db, "SELECT count(*) FROM articles WHERE indexed = 1 AND matched = 1") == total
                    and _count(db, "SELECT count(*) FROM outbox WHERE status = 'pending'") == 0
                    and _count(db, "SELECT count(*) FROM outbox") > 0, 90, "all work done")
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 60)
    log = (tmp_path / "service.log").read_text(encoding="utf-8")
    assert proc.returncode == 0, log[-3000:]
    assert log.rstrip().endswith("service stopped"), log[-3000:]
    assert _count(db, "SELECT count(*) FROM articles") == total


async def _expected_alerts(db) -> set[str]:
    index = TantivyIndex(db)
    try:
        return {h.article.id for h in (await index.search(QUERY, limit=10_000)).hits}
    finally:
        await index.close()


@pytest.mark.slow
async def test_kill_mid_ingest_and_stop_mid_delivery_lose_and_repeat_nothing(
        tmp_path, feed_server, webhook_receiver):
    cfg, db, total = _setup(tmp_path, feed_server, webhook_receiver)

    # SIGKILL as soon as some, but not all, articles are stored
    proc = await _start(cfg)
    await wait_until(lambda: _count(db, "SELECT count(*) FROM articles") > 0, 60, "first articles")
    proc.kill()
    await proc.wait()
    assert 0 < _count(db, "SELECT count(*) FROM articles") < total

    # SIGTERM (what `kill` and service managers send) while alerts are going out
    proc = await _start(cfg)
    await wait_until(lambda: len(webhook_receiver.deliveries) > 0, 60, "first alerts")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0

    await _finish(cfg, db, total, tmp_path)
    delivered = Counter(i["article_id"] for i in webhook_receiver.items())
    assert set(delivered) == await _expected_alerts(db)  # every alert, ...
    assert max(delivered.values()) == 1                    # ... none twice


@pytest.mark.slow
async def test_sigkill_mid_delivery_loses_nothing_and_repeats_only_the_message_in_flight(
        tmp_path, feed_server, webhook_receiver):
    """A SIGKILL between a channel accepting a message and the outbox recording it cannot be
    told apart from a failed send; that one message is sent again, with the same delivery id,
    so a receiver that deduplicates on X-Raqib-Delivery sees every alert exactly once."""
    cfg, db, total = _setup(tmp_path, feed_server, webhook_receiver)
    proc = await _start(cfg)
    await wait_until(lambda: len(webhook_receiver.deliveries) > 3, 60, "alerts going out")
    proc.kill()
    await proc.wait()
    await _finish(cfg, db, total, tmp_path)
    by_delivery = Counter(d["headers"]["X-Raqib-Delivery"] for d in webhook_receiver.deliveries)
    repeated = [k for k, n in by_delivery.items() if n > 1]
    assert len(repeated) <= 1 and all(by_delivery[k] == 2 for k in repeated)
    assert {i["article_id"] for i in webhook_receiver.items()} == await _expected_alerts(db)
