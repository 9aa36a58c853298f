"""One data dir, one service: a second `raqib run` and a `raqib once` refuse while the first
runs, and every alert goes out once. Real processes, feed server and webhook receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections import Counter

from monitor.store import SCHEMA, SCHEMA_VERSION, Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import ROOT, write_config


async def _raqib(*args: str, env: dict) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raqib.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, (out + err).decode()


async def test_second_run_and_once_refuse_and_each_alert_goes_out_once(tmp_path, feed_server, webhook_receiver):
    items = [rss_item(f"الناتو {n}", f"https://example.org/{n}", "قمة الناتو", guid=f"g{n}") for n in range(8)]
    feed_server.set_feed("/f.xml", rss(items))
    cfg = write_config(tmp_path, [("f", feed_server.url("/f.xml"))],
                       channels={"hook": {"type": "webhook", "url": webhook_receiver.url,
                                          "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
                       subscriptions=[{"id": "s", "query": "الناتو", "channels": ["hook"], "backfill": True}])
    env = {**os.environ, "RAQIB_TEST_HOOK_SECRET": "x"}
    log = open(tmp_path / "run.log", "wb")
    first = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg),
                                                 cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        for _ in range(600):
            if b"service started" in (tmp_path / "run.log").read_bytes():
                break
            await asyncio.sleep(0.05)
        code, out = await _raqib("run", "--config", str(cfg), env=env)
        assert code != 0 and f"in use by raqib run (pid {first.pid})" in out, out
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1
        code, out = await _raqib("once", "--config", str(cfg), env=env)
        assert code != 0 and f"(pid {first.pid})" in out, out
        for _ in range(600):
            if len(webhook_receiver.items()) >= 8:
                break
            await asyncio.sleep(0.05)
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.wait(), 60)
        log.close()
    assert first.returncode == 0
    assert "feed scheduled feed=f next_poll=" in (tmp_path / "run.log").read_text()  # when it will poll
    ids = Counter(d["headers"]["X-Raqib-Delivery"] for d in webhook_receiver.deliveries)
    assert len(ids) == 8 and set(ids.values()) == {1}
    # the lock went with the process: a once now runs, and sends nothing again
    code, out = await _raqib("once", "--config", str(cfg), env=env)
    assert code == 0, out
    assert len(webhook_receiver.deliveries) == 8


def test_a_file_from_before_schema_versions_is_migrated(tmp_path):
    db = tmp_path / "raqib.db"
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO feeds (url, etag) VALUES ('http://a', 'x'), ('http://b', NULL)")
    conn.execute("INSERT INTO subscriptions VALUES ('s','s','الناتو','[\"hook\"]',NULL,NULL,0,'cli',"
                 "'2025-01-01T00:00:00.000000Z')")
    conn.commit()
    conn.close()
    store = Store(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.feed_state("http://a").seeded and not store.feed_state("http://b").seeded
    (row,) = store.subscription_rows()
    assert row[0] == "s" and row[9] == 1735689600.0  # created carried over from the ISO column
    store.close()
    Store(db).close()  # opening again is a no-op


async def test_shutdown_cancels_a_poll_that_outlives_the_grace_period(tmp_path, feed_server):
    feed_server.set_slow("/slow.xml", 3.0, rss([]))
    cfg = write_config(tmp_path, [("slow", feed_server.url("/slow.xml"))],
                       settings={"schedule": {"shutdown_grace": 0.3},
                                 "fetch": {"total_timeout": 20, "read_timeout": 10}})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg),
                                                    cwd=ROOT, stdout=log, stderr=log)
    for _ in range(600):
        if feed_server.hits.get("/slow.xml"):
            break
        await asyncio.sleep(0.05)
    assert feed_server.hits.get("/slow.xml"), log_path.read_text()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 10)
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "Error" not in text, text
    assert "polls still running at shutdown were cancelled" in text and "cancelled=1" in text
    assert text.rstrip().endswith("service stopped")
