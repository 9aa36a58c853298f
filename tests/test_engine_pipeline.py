"""The whole pipeline on real Elasticsearch 9 and 8 and OpenSearch nodes: nothing else
changes with the backend.

Covers what only the pipeline can show: a cluster outage leaves articles and alerts queued in
the store until it is back, and two Raqib workers with different subscriptions sharing one
cluster keep each other's subscriptions and alert exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from indexers.factory import make_index
from monitor.config import load_config
from raqib.pipeline import Pipeline
from raqib.service import make_deliverer, run_once, start
from monitor.store import Store
from tests.corpus import rss, rss_item, seed_text
from tests.e2e_setup import ROOT, write_config
from tests.opensearch_node import NODES

pytestmark = pytest.mark.engine
TITLE = "روتي: على الناتو التركيز على دعم أوكرانيا"
NATO = {"id": "nato", "query": "الناتو", "channels": ["hook"], "backfill": True}  # old ANT articles
MEMO = {"id": "memo", "query": '"مذكرة بودابست"', "channels": ["hook"], "backfill": True}


@pytest.fixture(params=list(NODES))
def node(request):
    """(backend, url) of each real node."""
    return NODES[request.param][0], request.getfixturevalue(f"{request.param}_url")


def _config(tmp_path, name, feeds, hook_url, index_url, prefix, backend="opensearch",
            subscriptions=(NATO, MEMO)):
    return load_config(write_config(
        tmp_path / name, feeds,
        channels={"hook": {"type": "webhook", "url": hook_url, "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
        subscriptions=list(subscriptions),
        settings={"index": {"backend": backend, "urls": [index_url], "index_prefix": prefix,
                            "replicas": 0}}))


async def test_outage_queues_then_recovers(tmp_path, feed_server, webhook_receiver, node, monkeypatch):
    backend, url = node
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "k")
    feed_server.set_feed("/seed.xml", rss([
        rss_item(TITLE, "https://example.org/seed", seed_text(), guid="seed-1"),
        rss_item("خبر رياضي", "https://example.org/sport", "مباراة كرة القدم", guid="sport-1")]))
    feeds = [("seed", feed_server.url("/seed.xml"))]
    prefix = f"rqp-{uuid.uuid4().hex[:8]}"

    # worker A, cluster unreachable: articles are stored, indexing and alerting wait
    down = _config(tmp_path, "a", feeds, webhook_receiver.url, "http://127.0.0.1:9", prefix, backend)
    reports, drained, _ = await run_once(down)
    assert reports[0].new == 2 and drained.indexed == 0 and drained.index_error
    assert webhook_receiver.items() == []
    store = Store(down.data_dir / "raqib.db")
    assert store.conn.execute("SELECT count(*) FROM articles WHERE indexed = 0 AND matched = 0").fetchone()[0] == 2
    store.close()

    # the cluster is back (same data dir, real URL): the queues drain on start-up
    up = _config(tmp_path, "a", feeds, webhook_receiver.url, url, prefix, backend)
    _, drained, delivered = await run_once(up)
    assert delivered.failures == 0
    items = webhook_receiver.items()
    assert sorted((i["subscription_id"], i["title"]) for i in items) == [("memo", TITLE), ("nato", TITLE)]
    index = make_index(up, up.data_dir / "raqib.db")
    await index.refresh()
    page = await index.search("للناتو")
    assert [h.article.title for h in page.hits] == [TITLE]
    h0 = page.hits[0]
    assert "الناتو" in [h0.article.title[m.start:m.end] for m in h0.title_marks]
    assert (await index.count()) == 2
    await index.close()

    # operations: status shows cluster health, the server and what it can do; reindex
    # rebuilds from the store
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "raqib.cli", "index", *args, "--config",
                               str(up.config_dir)], capture_output=True, text=True, cwd=ROOT, timeout=120)

    st = json.loads(cli("status", "--json").stdout)
    assert st["backend"] == backend and st["health"]["status"] in ("green", "yellow")
    server = st["health"]["server"]
    assert server["flavor"] == backend and server["version"] and server["tested_versions"]
    assert server["version"] in server["tested_versions"]  # the suite runs what it claims
    assert st["stored_articles"] == 2 and st["waiting_to_index"] == 0
    r = cli("reindex")
    assert r.returncode == 0 and "reindexed 2 articles" in r.stdout, r.stderr


async def test_two_workers_with_different_subscriptions_keep_each_others_and_alert_once(
        tmp_path, feed_server, webhook_receiver, node, monkeypatch):
    """Worker A watches `nato`; worker B, a long-running service, watches `nato` and `memo`.
    A restarting (every `raqib once` is a start) must not delete B's `memo`, and an article
    both match is sent once for `nato` (whoever claims it first) and once for `memo`."""
    backend, url = node
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "k")
    sport = rss_item("خبر رياضي", "https://example.org/sport", "مباراة كرة القدم", guid="sport-1")
    feed_server.set_feed("/news.xml", rss([sport]))
    feeds = [("news", feed_server.url("/news.xml"))]
    prefix = f"rqw-{uuid.uuid4().hex[:8]}"
    a = _config(tmp_path, "a", feeds, webhook_receiver.url, url, prefix, backend, [NATO])
    b = _config(tmp_path, "b", feeds, webhook_receiver.url, url, prefix, backend, [NATO, MEMO])

    async with Pipeline(b) as pb:
        await start(pb)
        deliver_b = make_deliverer(pb)

        async def round_b():
            await pb.poll_all(list(b.feeds))
            await pb.drain()
            return await deliver_b.run_once()

        await round_b()  # B's first fetch: only the sports item, nothing alerts
        await run_once(a)  # A starts (and stores its subscriptions) while B runs
        if pb.index.supports_percolation:  # both sets live in the cluster's percolator
            assert (await pb.index.health())["subscriptions"] == 2
        # a new article both workers' subscriptions match
        feed_server.set_feed("/news.xml", rss([
            rss_item(TITLE, "https://example.org/x", seed_text(), guid="x-1"), sport]))
        assert (await round_b()).messages >= 1  # B is first: nato and memo are B's to send
        await run_once(a)  # A restarts, finds the article too: its nato claim is B's
        await round_b()
    items = webhook_receiver.items()
    assert sorted((i["subscription_id"], i["title"]) for i in items) == [("memo", TITLE), ("nato", TITLE)]
