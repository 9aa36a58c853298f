"""A new feed's back catalogue, old articles and a new subscription's past send no alert;
all of it is still stored and searchable. Real local feed server and webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from alerts.subscriptions import Subscription, save
from indexers.tantivy_index import TantivyIndex
from monitor.config import load_config
from raqib.service import run_once
from monitor.store import Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import write_config


def _item(n: int, age: timedelta = timedelta(minutes=5)) -> str:
    pub = format_datetime(datetime.now(UTC) - age)
    return rss_item(f"الناتو خبر {n}", f"https://example.org/{n}", f"قمة حلف الناتو رقم {n}", pub, guid=f"g{n}")


@pytest.fixture
def setup(tmp_path, feed_server, webhook_receiver, monkeypatch):
    monkeypatch.setenv("RAQIB_TEST_HOOK_SECRET", "x")

    def make(subscriptions, items, settings=None):
        feed_server.set_feed("/f.xml", rss(items))
        return load_config(write_config(
            tmp_path, [("f", feed_server.url("/f.xml"))],
            channels={"hook": {"type": "webhook", "url": webhook_receiver.url,
                               "secret_env": "RAQIB_TEST_HOOK_SECRET"}},
            subscriptions=subscriptions, settings=settings))
    return make


async def test_first_fetch_is_stored_but_does_not_alert_later_items_do(setup, feed_server, webhook_receiver):
    config = setup([{"id": "nato", "query": "الناتو", "channels": ["hook"]}],
                   [_item(n, timedelta(days=400 + n)) for n in range(20)] + [_item(99)])
    reports, drained, delivered = await run_once(config)
    assert reports[0].new == 21 and drained.indexed == 21
    assert webhook_receiver.items() == []  # 21 matches, all back catalogue (one even fresh)
    index = TantivyIndex(config.data_dir / "raqib.db")
    assert (await index.search("الناتو")).total == 21  # still searchable
    await index.close()

    # the next fetch brings one fresh item and one that was published long ago
    feed_server.set_feed("/f.xml", rss([_item(100), _item(101, timedelta(days=3))]
                                       + [_item(n, timedelta(days=400 + n)) for n in range(20)]))
    await run_once(config)
    assert [i["article_id"] for i in webhook_receiver.items()] == [
        Store(config.data_dir / "raqib.db").conn.execute(
            "SELECT id FROM articles WHERE link = 'https://example.org/100'").fetchone()[0]]


async def test_a_subscription_can_ask_for_the_back_catalogue(setup, webhook_receiver):
    config = setup([{"id": "all", "query": "الناتو", "channels": ["hook"], "backfill": True}],
                   [_item(n, timedelta(days=30)) for n in range(3)])
    await run_once(config)
    assert len(webhook_receiver.items()) == 3


async def test_max_age_is_configurable(setup, feed_server, webhook_receiver, tmp_path):
    config = setup([{"id": "nato", "query": "الناتو", "channels": ["hook"]}], [_item(0)],
                   {"alerts": {"max_age": "12h"}})
    assert config.settings.alerts.max_age == 12 * 3600
    await run_once(config)
    feed_server.set_feed("/f.xml", rss([_item(1, timedelta(hours=30)), _item(2, timedelta(hours=10))]))
    await run_once(config)
    assert [i["title"] for i in webhook_receiver.items()] == ["الناتو خبر 2"]


async def test_a_new_subscription_alerts_only_on_articles_stored_after_it(setup, feed_server, webhook_receiver):
    config = setup([], [_item(0)])
    await run_once(config)  # seeds the feed
    feed_server.set_feed("/f.xml", rss([_item(1), _item(0)]))
    await run_once(config)  # item 1 is news, but nobody subscribed yet
    store = Store(config.data_dir / "raqib.db")
    save(store, Subscription("late", "late", "الناتو", ("hook",)))
    store.close()
    feed_server.set_feed("/f.xml", rss([_item(2), _item(1), _item(0)]))
    await run_once(config)
    assert [i["title"] for i in webhook_receiver.items()] == ["الناتو خبر 2"]
