"""Channels fail alone and rows are leased: real webhook receivers on loopback, one of them
hanging or dead, and two senders on one data dir."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from alerts import outbox
from alerts.channels import SignedWebhookChannel
from alerts.delivery import Deliverer
from alerts.subscriptions import Subscription, save
from monitor.config import AlertSettings
from monitor.store import Store
from tests.receivers import running_receiver
from tests.test_alerts import Clock, _db, _item


def _settings(**kw) -> AlertSettings:
    return AlertSettings(**{"deliver_interval": 1, "retry_base": 10, "retry_max": 100, **kw})


def _enqueue(store: Store, sub: str, ns, channels, now: float) -> None:
    outbox.enqueue_and_mark(store, [(ch, _item(sub, n)) for n in ns for ch in channels], [], now)


async def test_a_hanging_channel_delays_nothing_else(tmp_path):
    store = Store(tmp_path / "raqib.db")
    save(store, Subscription("s", "s", "الناتو", ("slow", "hook")))
    _enqueue(store, "s", [1, 2, 3], ("slow", "hook"), time.time())
    async with running_receiver() as slow, running_receiver() as good:
        slow.hang = True
        channels = {"slow": SignedWebhookChannel("slow", slow.url, "k"),
                    "hook": SignedWebhookChannel("hook", good.url, "k")}
        d = Deliverer(store, _db, channels, _settings(send_timeout=1.5))
        report = await d.run_once()
    assert sorted(i["article_id"] for i in good.items()) == ["a1", "a2", "a3"]
    assert report.messages == 3 and report.failures == 1
    # the hanging channel was tried once, then rested: its other alerts wait, none is lost
    assert "no answer within 1.5 s" in report.errors[0]
    rows = store.outbox_rows()
    assert Counter((r[3], r[4]) for r in rows) == {("hook", "sent"): 3, ("slow", "pending"): 3}
    assert [r[5] for r in rows if r[3] == "slow"].count(1) == 1  # one attempt, on one row
    store.close()


async def test_the_working_channel_is_not_serialised_behind_the_slow_one(tmp_path):
    """Sends to different channels run concurrently: with a channel that answers after 1 s,
    the other channel's alerts are all delivered before that answer comes."""
    store = Store(tmp_path / "raqib.db")
    save(store, Subscription("s", "s", "الناتو", ("slow", "hook")))
    _enqueue(store, "s", [1, 2, 3], ("slow", "hook"), time.time())
    async with running_receiver() as slow, running_receiver() as good:
        slow.delay = 1.0
        channels = {"slow": SignedWebhookChannel("slow", slow.url, "k"),
                    "hook": SignedWebhookChannel("hook", good.url, "k")}
        d = Deliverer(store, _db, channels, _settings(send_timeout=10))
        task = asyncio.create_task(d.run_once())
        await asyncio.sleep(0.9)
        good_done, slow_done = len(good.items()), len(slow.items())
        report = await task
    assert good_done == 3 and slow_done == 0
    assert report.messages == 6 and report.failures == 0
    store.close()


async def test_a_dead_channel_rests_instead_of_being_hit_every_round(tmp_path):
    store = Store(tmp_path / "raqib.db")
    clock = Clock()
    for sub in ("a", "b", "c"):
        save(store, Subscription(sub, sub, "الناتو", ("hook",)))
        _enqueue(store, sub, [1, 2], ("hook",), clock.now)
    async with running_receiver() as dead:
        dead.fail_next = 10_000
        d = Deliverer(store, _db, {"hook": SignedWebhookChannel("hook", dead.url, "k")},
                      _settings(retry_base=10, retry_max=100), clock)
        await d.run_once()
        assert dead.requests == 1  # six alerts due, one request: the channel rests after it
        for _ in range(5):
            clock.now += 1
            await d.run_once()
        assert dead.requests == 1  # still resting (8-10 s for the first failure)
        clock.now += 10
        await d.run_once()
        assert dead.requests == 2
        assert d.health["hook"].failures == 2
        dead.fail_next = 0
        clock.now += 25
        report = await d.run_once()
    assert report.messages == 6 and d.health["hook"].failures == 0
    assert store.outbox_backlog() == {"sent": 6}
    store.close()


async def test_two_senders_on_one_data_dir_never_send_the_same_alert(tmp_path):
    """Two deliverers, each with its own connection and thread, race over 30 alerts through a
    receiver that answers slowly; every alert arrives exactly once."""
    db = tmp_path / "raqib.db"
    first = Store(db)
    save(first, Subscription("s", "s", "الناتو", ("hook",)))
    _enqueue(first, "s", range(30), ("hook",), time.time())
    second, third = Store(db), Store(db)
    async with running_receiver() as rec:
        rec.delay = 0.02

        def sender(store: Store) -> Deliverer:
            async def db_thread(fn, *args):
                return await asyncio.to_thread(fn, *args)
            return Deliverer(store, db_thread, {"hook": SignedWebhookChannel("hook", rec.url, "k")}, _settings())

        a, b, c = sender(first), sender(second), sender(third)
        assert len({a.owner, b.owner, c.owner}) == 3
        reports = await asyncio.gather(a.run_once(page=4), b.run_once(page=4), c.run_once(page=4))
    assert all(r.messages for r in reports)  # all three really raced
    ids = [d["headers"]["X-Raqib-Delivery"] for d in rec.deliveries]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert first.outbox_backlog() == {"sent": 30}
    for s in (first, second, third):
        s.close()


async def test_a_dead_senders_lease_runs_out_and_the_alert_goes_out_with_the_same_id(tmp_path):
    store = Store(tmp_path / "raqib.db")
    clock = Clock()
    save(store, Subscription("s", "s", "الناتو", ("hook",)))
    _enqueue(store, "s", [1], ("hook",), clock.now)
    # a sender claims the row and dies before sending
    (claimed,) = outbox.claim(store, "dead-owner", clock.now, 60)
    async with running_receiver() as rec:
        d = Deliverer(store, _db, {"hook": SignedWebhookChannel("hook", rec.url, "k")}, _settings(), clock)
        assert (await d.run_once()).messages == 0  # still leased to the dead owner
        clock.now += 61
        assert (await d.run_once()).messages == 1
    assert rec.deliveries[0]["headers"]["X-Raqib-Delivery"] == claimed.item.delivery_id
    # a clean shutdown hands leases back at once
    _enqueue(store, "s", [2], ("hook",), clock.now)
    outbox.claim(store, "other", clock.now, 60)
    assert store.release_leases("other") == 1
    store.close()


async def test_a_digest_spanning_many_pages_is_one_message(tmp_path):
    store = Store(tmp_path / "raqib.db")
    clock = Clock()
    save(store, Subscription("d", "d", "الناتو", ("hook",), digest_minutes=10))
    _enqueue(store, "d", range(1200), ("hook",), clock.now)
    async with running_receiver() as rec:
        d = Deliverer(store, _db, {"hook": SignedWebhookChannel("hook", rec.url, "k")}, _settings(), clock)
        assert (await d.run_once()).messages == 0  # the period is open
        clock.now += 601
        report = await d.run_once()
    assert report.messages == 1 and [len(x["json"]["items"]) for x in rec.deliveries] == [1200]
    store.close()


async def test_shutdown_ends_a_delivery_round_at_the_next_message(tmp_path):
    store = Store(tmp_path / "raqib.db")
    save(store, Subscription("s", "s", "الناتو", ("hook",)))
    _enqueue(store, "s", range(40), ("hook",), time.time())
    async with running_receiver() as rec:
        rec.delay = 0.1
        d = Deliverer(store, _db, {"hook": SignedWebhookChannel("hook", rec.url, "k")}, _settings())
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        report = await d.run_once(stop=stop)
    assert 0 < report.messages < 40
    backlog = store.outbox_backlog()
    assert backlog["sent"] == report.messages and backlog["pending"] == 40 - report.messages
    assert store.release_leases(None) == 0  # nothing left leased: the rest is due at the next start
    store.close()


def test_every_subscription_change_is_noticed(tmp_path):
    store = Store(tmp_path / "raqib.db")
    seen = {store.subscriptions_version()}
    # two different sets that the old concatenated version could not tell apart
    save(store, Subscription("nato", "n", "-ar topic:nato", ("hook",)))
    seen.add(store.subscriptions_version())
    store.remove_subscription("nato")
    save(store, Subscription("nato-ar", "n", " topic:nato", ("hook",)))
    seen.add(store.subscriptions_version())
    save(store, Subscription("nato-ar", "n", " topic:nato", ("hook",), throttle_max=3))  # throttle only
    seen.add(store.subscriptions_version())
    assert len(seen) == 4
    store.close()
