"""Retention: old articles leave the store, the index and the outbox; the file shrinks; the
service applies it; `raqib db stats` reports what is stored."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from indexers.tantivy_index import TantivyIndex
from monitor import retention
from monitor.store import Store
from tests.e2e_setup import ROOT, write_config
from tests.helpers import make_article, stop_service

NOW = datetime.now(UTC)


def _article(i: int, age_days: float, fetched_age: float | None = None):
    a = make_article(f"قمة الناتو {i}", "اجتمع قادة حلف الناتو " + "نص طويل " * 400,
                     link=f"https://n.example.org/{i}", published=NOW - timedelta(days=age_days),
                     topics=("nato",))
    return replace(a, fetched=NOW - timedelta(days=age_days if fetched_age is None else fetched_age))


def _fill(db, old: int, new: int) -> list:
    store = Store(db)
    arts = [_article(i, 40) for i in range(old)] + [_article(old + i, 1) for i in range(new)]
    # an old article fetched yesterday (still in its feed) stays, or the next poll re-stores it
    arts.append(_article(10_000, 40, fetched_age=1))
    store.ingest(arts, [], {}, None)
    rows = [(f"d{a.id}", "s", a.id, "hook", "{}") for a in arts]
    store.enqueue_alerts(rows, [], NOW.timestamp())
    claimed = store.claim_outbox("test", NOW.timestamp(), 60, limit=10_000)
    store.outbox_sent([r[0] for r in claimed], "test", NOW.timestamp(), "m")  # nothing for a service to send
    store.close()
    return arts


async def _db(fn, *args):
    return fn(*args)


async def test_old_articles_leave_store_index_and_outbox_and_the_file_shrinks(tmp_path):
    db = tmp_path / "raqib.db"
    arts = _fill(db, old=300, new=20)
    index = TantivyIndex(db)
    store = Store(db)
    try:
        await index.index(arts)
        assert (await index.search("الناتو", limit=1)).total == 321
        size_before = db.stat().st_size + (tmp_path / "raqib.db-wal").stat().st_size

        nothing = await retention.apply(_db, store, index, 0)
        assert nothing.articles == 0 and store.count() == 321  # 0 keeps forever

        rep = await retention.apply(_db, store, index, 30, batch=128)
        assert (rep.articles, rep.alerts, rep.error) == (300, 300, "")
        assert rep.compacted == "vacuum"  # the first run switches the file to incremental vacuum
        assert store.count() == 21
        assert (await index.search("الناتو", limit=1)).total == 21
        assert await index.count() == 21
        kept = {r[2] for r in store.outbox_rows()}
        assert kept == {a.id for a in arts[300:]}
        assert store.conn.execute("SELECT count(*) FROM article_topics").fetchone()[0] == 21
        assert db.stat().st_size < size_before / 3
        assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2

        # later runs free pages incrementally
        store.ingest([_article(20_000 + i, 50) for i in range(50)], [], {}, None)
        rep = await retention.apply(_db, store, index, 30)
        assert rep.articles == 50 and rep.compacted == "incremental"
        assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    finally:
        store.close()
        await index.close()


class _RefusingIndex:
    async def delete(self, ids):
        from monitor.errors import IndexError_

        raise IndexError_("cluster unavailable")


async def test_an_index_that_refuses_keeps_the_articles_for_the_next_run(tmp_path):
    db = tmp_path / "raqib.db"
    _fill(db, old=5, new=1)
    store = Store(db)
    try:
        rep = await retention.apply(_db, store, _RefusingIndex(), 30)
        assert rep.articles == 0 and "cluster unavailable" in rep.error
        assert store.count() == 7  # nothing leaves the store that the index still holds
    finally:
        store.close()


async def test_the_service_applies_retention_and_db_stats_reports(tmp_path, feed_server):
    from tests.corpus import rss, rss_item

    feed_server.set_feed("/f.xml", rss([rss_item("كورسك", "https://k.example.org/1", "كورسك")]))
    cfg = write_config(tmp_path, [("f", feed_server.url("/f.xml"))], settings={"retention": {"days": 30}})
    db = tmp_path / "data" / "raqib.db"
    db.parent.mkdir(parents=True)
    _fill(db, old=40, new=3)
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "db", "stats", "--json", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["articles"] == 44 and st["by_topic"] == {"nato": 44} and st["by_source"] == {"test": 44}
    assert st["oldest_published"] < st["newest_published"] and st["outbox"] == {"sent": 44}
    assert st["files"]["raqib.db"] > 0 and st["retention_days"] == 30

    log = open(tmp_path / "service.log", "ab")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg),
                                                cwd=ROOT, stdout=log, stderr=log, env=dict(os.environ))
    log.close()

    def count() -> int:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute("SELECT count(*) FROM articles WHERE source = 'test'").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return -1

    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        done = "retention: old articles deleted"  # logged after the deletions and the compaction
        while done not in (tmp_path / "service.log").read_text(encoding="utf-8") and loop.time() < end:
            await asyncio.sleep(0.2)
        assert count() == 4, (tmp_path / "service.log").read_text()
    finally:
        await stop_service(proc)
    assert proc.returncode == 0
    text = (tmp_path / "service.log").read_text(encoding="utf-8")
    assert "retention: old articles deleted" in text and "ERROR" not in text, text
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "db", "stats", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "articles:" in r.stdout and "outbox:" in r.stdout, r.stdout + r.stderr


def test_db_prune_applies_retention_now_and_refuses_beside_a_service(tmp_path):
    from monitor.lock import DataDirLock

    cfg = write_config(tmp_path, [])
    db = tmp_path / "data" / "raqib.db"
    db.parent.mkdir(parents=True)
    _fill(db, old=10, new=2)

    def prune(*args):
        return subprocess.run([sys.executable, "-m", "raqib.cli", "db", "prune", *args, "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    r = prune()
    assert r.returncode == 2 and "--days" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with DataDirLock(db.parent, "run"):
        r = prune("--days", "30")
        assert r.returncode == 1 and "in use" in r.stderr, r.stderr
    r = prune("--days", "30")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"articles_deleted": 10, "alerts_deleted": 10, "compacted": "vacuum",
                                    "error": None}
    store = Store(db)
    assert store.count() == 3
    store.close()
