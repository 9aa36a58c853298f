"""Outbox and delivery worker against a real webhook receiver: retries, throttle, digest."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from alerts import outbox
from alerts.channels import SignedWebhookChannel
from alerts.delivery import Deliverer
from alerts.message import AlertItem
from alerts.subscriptions import Subscription, save
from monitor.config import AlertSettings
from monitor.store import Store


class Clock:
    """A settable clock, so digest windows and back-off can be stepped through without sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _db(fn, *args):
    return fn(*args)


def _item(sub: str, n: int) -> AlertItem:
    return AlertItem(delivery_id=outbox.delivery_id(sub, f"a{n}", "hook"), subscription_id=sub,
                     subscription_name=sub, query="الناتو", article_id=f"a{n}",
                     title=f"خبر رقم {n} عن الناتو", source="test", link=f"https://example.org/{n}",
                     topics=("nato",), snippet="قمة «الناتو» في لاهاي",
                     published=datetime(2024, 12, 3, tzinfo=UTC), language="ar")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "raqib.db")
    yield s
    s.close()


def _enqueue(store, sub, ns, now, channel="hook"):
    return outbox.enqueue_and_mark(store, [(channel, _item(sub, n)) for n in ns], [], now)


def _deliverer(store, receiver, clock, channels=None):
    hook = SignedWebhookChannel("hook", receiver.url, "secret")
    return Deliverer(store, _db, channels or {"hook": hook},
                     AlertSettings(deliver_interval=1, retry_base=10, retry_max=100), clock)


async def test_same_alert_is_queued_once(store, webhook_receiver):
    clock = Clock()
    save(store, Subscription("s", "s", "الناتو", ("hook",)))
    assert _enqueue(store, "s", [1, 2], clock.now) == 2
    assert _enqueue(store, "s", [1, 2, 3], clock.now) == 1  # re-matched articles: no new rows
    await _deliverer(store, webhook_receiver, clock).run_once()
    assert sorted(i["article_id"] for i in webhook_receiver.items()) == ["a1", "a2", "a3"]


async def test_failing_channel_is_retried_with_backoff_and_nothing_is_lost(store, webhook_receiver):
    clock = Clock()
    save(store, Subscription("s", "s", "الناتو", ("hook",)))
    _enqueue(store, "s", [1], clock.now)
    d = _deliverer(store, webhook_receiver, clock)
    webhook_receiver.fail_next = 2
    r1 = await d.run_once()
    assert r1.failures == 1 and "503" in r1.errors[0]
    r = await d.run_once()
    assert r.messages == r.failures == 0               # backing off: not due yet
    clock.now += 10.5                                  # first retry is due after 8-10 s
    assert (await d.run_once()).failures == 1          # fails again: back-off doubles (16-20 s)
    clock.now += 15
    r = await d.run_once()
    assert r.messages == r.failures == 0
    clock.now += 6
    r = await d.run_once()
    assert r.messages == 1
    assert [i["article_id"] for i in webhook_receiver.items()] == ["a1"]
    assert outbox.backlog(store) == {"sent": 1}
    row = store.conn.execute("SELECT attempts, last_error FROM outbox").fetchone()
    assert row == (3, None)


# A broken channel beside a working one: tests/test_delivery_isolation.py (a hanging and a dead
# receiver, not an instantly refused port).


async def test_throttle_folds_the_excess_into_one_message(store, webhook_receiver):
    clock = Clock()
    save(store, Subscription("s", "s", "الناتو", ("hook",), throttle_max=2, throttle_per=3600))
    _enqueue(store, "s", [1, 2, 3, 4, 5], clock.now)
    d = _deliverer(store, webhook_receiver, clock)
    r = await d.run_once()
    assert r.messages == 2 and r.items == 5            # one alone, then a digest of four
    assert [len(x["json"]["items"]) for x in webhook_receiver.deliveries] == [1, 4]
    _enqueue(store, "s", [6], clock.now)
    clock.now += 60
    r = await d.run_once()
    assert r.messages == 0 and r.held == 1             # budget spent: held, not dropped
    clock.now += 3600
    assert (await d.run_once()).items == 1
    assert sorted(i["article_id"] for i in webhook_receiver.items()) == [f"a{i}" for i in range(1, 7)]


async def test_digest_sends_one_message_per_period(store, webhook_receiver):
    clock = Clock()
    save(store, Subscription("s", "s", "الناتو", ("hook",), digest_minutes=10))
    _enqueue(store, "s", [1, 2], clock.now)
    d = _deliverer(store, webhook_receiver, clock)
    assert (await d.run_once()).messages == 0
    clock.now += 300
    _enqueue(store, "s", [3], clock.now)
    assert (await d.run_once()).messages == 0
    clock.now += 301
    r = await d.run_once()
    assert r.messages == 1 and r.items == 3
    (msg,) = webhook_receiver.deliveries
    assert msg["json"]["count"] == 3
    assert msg["headers"]["X-Raqib-Delivery"].startswith("digest-")
