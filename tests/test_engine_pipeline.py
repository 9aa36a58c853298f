"""The whole pipeline on a real OpenSearch node: nothing else changes with the backend.

Covers what only the pipeline can show: a cluster outage leaves articles and alerts queued in
the store until it is back, and two Raqib workers sharing one cluster alert exactly once."""

from __future__ import annotations

import uuid

import pytest

from indexers.factory import make_index
from monitor.config import load_config
from monitor.service import run_once
from monitor.store import Store
from tests.corpus import rss, rss_item, seed_text
from tests.e2e_setup import write_config

pytestmark = pytest.mark.engine
TITLE = "روتي: على الناتو التركيز على دعم أوكرانيا"


def _config(tmp_path, name, feeds, hook_url, index_url, prefix):
    return load_config(write_config(
        tmp_path / name, feeds,
        channels={"hook": {"type": "webhook", "url": hook_url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=[{"id": "nato", "query": "الناتو", "channels": ["hook"]},
                       {"id": "memo", "query": '"مذكرة بودابست"', "channels": ["hook"]}],
        settings={"index": {"backend": "opensearch", "urls": [index_url], "index_prefix": prefix,
                            "replicas": 0}}))


async def test_outage_queues_then_recovers_and_two_workers_alert_once(
        tmp_path, feed_server, webhook_receiver, opensearch_url, monkeypatch):
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "k")
    feed_server.set_feed("/seed.xml", rss([
        rss_item(TITLE, "https://example.org/seed", seed_text(), guid="seed-1"),
        rss_item("خبر رياضي", "https://example.org/sport", "مباراة كرة القدم", guid="sport-1")]))
    feeds = [("seed", feed_server.url("/seed.xml"))]
    prefix = f"rqp-{uuid.uuid4().hex[:8]}"

    # worker A, cluster unreachable: articles are stored, indexing and alerting wait
    down = _config(tmp_path, "a", feeds, webhook_receiver.url, "http://127.0.0.1:9", prefix)
    reports, drained, _ = await run_once(down)
    assert reports[0].new == 2 and drained.indexed == 0 and drained.index_error
    assert webhook_receiver.items() == []
    store = Store(down.data_dir / "raqib.db")
    assert store.conn.execute("SELECT count(*) FROM articles WHERE indexed = 0 AND matched = 0").fetchone()[0] == 2
    store.close()

    # the cluster is back (same data dir, real URL): the queues drain on start-up
    up = _config(tmp_path, "a", feeds, webhook_receiver.url, opensearch_url, prefix)
    _, drained, delivered = await run_once(up)
    assert delivered.failures == 0
    items = webhook_receiver.items()
    assert sorted((i["subscription_id"], i["title"]) for i in items) == [("memo", TITLE), ("nato", TITLE)]
    index = make_index(up, up.data_dir / "raqib.db")
    await index.refresh()
    page = await index.search("للناتو")
    assert [h.article.title for h in page.hits] == [TITLE]
    assert "«الناتو»" in page.hits[0].highlights["title"]
    assert (await index.count()) == 2
    await index.close()

    # worker B: its own store, the same cluster and feeds — it finds the same articles new,
    # but the cluster-wide claim means it sends nothing already claimed by A
    other = _config(tmp_path, "b", feeds, webhook_receiver.url, opensearch_url, prefix)
    reports, drained, delivered = await run_once(other)
    assert reports[0].new == 2 and drained.matched == 2
    assert delivered.messages == 0
    assert len(webhook_receiver.items()) == 2

    # operations: status shows cluster health and counts; reindex rebuilds from the store
    import json
    import subprocess
    import sys

    from tests.e2e_setup import ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "monitor.cli", "index", *args, "--config",
                               str(other.config_dir)], capture_output=True, text=True, cwd=ROOT, timeout=120)

    st = json.loads(cli("status", "--json").stdout)
    assert st["backend"] == "opensearch" and st["health"]
    assert st["stored_articles"] == 2 and st["waiting_to_index"] == 0
    r = cli("reindex")
    assert r.returncode == 0 and "reindexed 2 articles" in r.stdout, r.stderr
