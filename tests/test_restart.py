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

from indexers.sqlite import SqliteIndex
from tests.corpus import ant_item, rss, topical_docs
from tests.e2e_setup import ROOT, write_config

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


async def _start(cfg: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "RAQIB_TEST_HOOK_SECRET": "s3cret"})


async def _wait_for(pred, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_kill_mid_run_then_restart_loses_nothing(tmp_path, feed_server, webhook_receiver):
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
        subscriptions=[{"id": "watch", "query": "topic:nato OR topic:kursk OR روسيا", "channels": ["hook"]}],
        settings={"parse": {"workers": 2}, "fetch": {"read_timeout": 5, "total_timeout": 10}})
    db = tmp_path / "data" / "raqib.db"

    # first run: SIGKILL as soon as some, but not all, articles are stored
    proc = await _start(cfg)
    await _wait_for(lambda: _count(db, "SELECT count(*) FROM articles") > 0, 60, "first articles")
    proc.kill()
    await proc.wait()
    stored_at_kill = _count(db, "SELECT count(*) FROM articles")
    assert 0 < stored_at_kill

    # second run: SIGKILL again once alerts have started going out
    proc = await _start(cfg)
    await _wait_for(lambda: len(webhook_receiver.deliveries) > 0, 60, "first alerts")
    proc.kill()
    await proc.wait()

    # third run: let it finish, then stop it gracefully with SIGTERM
    proc = await _start(cfg)
    total = N_FEEDS * PER_FEED
    await _wait_for(lambda: _count(db, "SELECT count(*) FROM articles WHERE indexed = 1 AND matched = 1") == total
                    and _count(db, "SELECT count(*) FROM outbox WHERE status = 'pending'") == 0
                    and _count(db, "SELECT count(*) FROM outbox") > 0, 90, "all work done")
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"service stopped" in err

    # nothing lost: every article stored, indexed and searchable
    assert _count(db, "SELECT count(*) FROM articles") == total
    index = SqliteIndex(db)
    expected = await index.search("topic:nato OR topic:kursk OR روسيا", limit=10_000)
    await index.close()
    # every alert delivered, none twice
    delivered = Counter(i["article_id"] for i in webhook_receiver.items())
    assert set(delivered) == {h.article.id for h in expected.hits}
    assert max(delivered.values()) == 1, [k for k, v in delivered.items() if v > 1]
