"""The delivery worker: sends what the outbox holds, honouring digests and throttles.

Rows are leased before they are sent (two processes never send one row). Channels are
served concurrently, each send under a deadline, and a failing channel rests (per-channel
exponential back-off, a circuit breaker) while the others carry on; nothing is ever dropped.
Throttled alerts wait for the window to reopen and are then folded into one digest message,
so a burst costs one message, not a lost alert."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor import metrics
from alerts import outbox
from alerts.message import AlertItem, message_id
from alerts.subscriptions import Subscription, load_all
from monitor.config import AlertSettings
from monitor.errors import ChannelError
from monitor.store import Store

log = logging.getLogger("raqib.alerts")

DbRunner = Callable[..., Awaitable[Any]]


class LogChannel:
    """Writes alerts to the service log: the shipped default, and handy while tuning rules."""

    def __init__(self, name: str):
        self.name = name

    async def send(self, items: list[AlertItem]) -> None:
        for it in items:
            log.info("alert", extra={"subscription": it.subscription_id, "article": it.article_id,
                                     "title": it.title, "link": it.link, "topics": list(it.topics)})


def make_channels(specs: Mapping[str, dict], send_timeout: float | None = None) -> dict[str, Any]:
    """Channels from alerts.yaml. A channel's own timeout is kept below the per-send deadline:
    a send abandoned by the deadline but finished later by the channel's thread would be sent
    again on the retry (Apprise channels carry no delivery id to deduplicate on)."""
    from alerts.channels import build_channel

    out: dict[str, Any] = {}
    for name, spec in specs.items():
        ch = LogChannel(name) if spec.get("type") == "log" else build_channel(name, dict(spec))
        if send_timeout and isinstance(getattr(ch, "timeout", None), int | float):
            ch.timeout = min(ch.timeout, send_timeout * 0.8)
        out[name] = ch
    return out


@dataclass
class DeliveryReport:
    messages: int = 0
    items: int = 0
    failures: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class ChannelHealth:
    """Back-off and circuit breaker of one channel (not of one row): after a failure the
    channel rests for an exponentially growing time, and none of its rows is tried, so a
    dead webhook is not hit every round and costs the other channels nothing."""

    failures: int = 0  # in a row
    resting_until: float = 0.0
    last_error: str = ""

    def is_open(self, now: float) -> bool:
        return now < self.resting_until


def owner_id() -> str:
    """Who holds an outbox lease: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Deliverer:
    def __init__(self, store: Store, db: DbRunner, channels: Mapping[str, Any],
                 settings: AlertSettings, clock: Callable[[], float] = time.time):
        self.store, self.db, self.channels, self.settings, self.clock = store, db, channels, settings, clock
        self.wake = asyncio.Event()
        self.owner = owner_id()
        self.health: dict[str, ChannelHealth] = defaultdict(ChannelHealth)
        self._stop: asyncio.Event | None = None

    @property
    def lease(self) -> float:
        """A lease outlives one send by a wide margin; it is renewed right before each send."""
        return self.settings.send_timeout * 2 + 30

    def retry_delay(self, attempts: int) -> float:
        base = min(self.settings.retry_max, self.settings.retry_base * 2 ** min(attempts, 30))
        return base * random.uniform(0.8, 1.0)

    async def run_once(self, page: int = 500, stop: asyncio.Event | None = None) -> DeliveryReport:
        """Claim the due rows page by page and send them, each channel concurrently; with
        `stop`, the round ends at the next message once it is set (rows not sent are handed
        back), so shutdown never waits for a whole backlog."""
        report = DeliveryReport()
        self._stop = stop
        while not (stop and stop.is_set()):
            rows = await self.db(outbox.claim, self.store, self.owner, self.clock(), self.lease, page)
            if not rows:
                return report
            # Only the subscriptions these rows belong to (100k of them loaded every round cost
            # most of the service's time in bench/latency.py).
            subs = {s.id: s for s in await self.db(load_all, self.store, {r.subscription_id for r in rows})}
            groups: dict[str, dict[str, list[outbox.OutboxRow]]] = defaultdict(lambda: defaultdict(list))
            for r in rows:
                groups[r.channel][r.subscription_id].append(r)
            await asyncio.gather(*(self._deliver_channel(ch, by_sub, subs, report)
                                   for ch, by_sub in groups.items()))
            if len(rows) < page:
                return report
        await self.release()
        return report

    async def release(self) -> None:
        await self.db(self.store.release_leases, self.owner)

    async def _deliver_channel(self, channel_name: str, by_sub: dict[str, list[outbox.OutboxRow]],
                               subs: dict[str, Subscription], report: DeliveryReport) -> None:
        for sub_id, group in by_sub.items():
            if self._stop is not None and self._stop.is_set():
                await self.db(self.store.outbox_postpone, [r.id for r in group], self.owner, 0.0)
                continue
            health = self.health[channel_name]
            if health.is_open(self.clock()):
                await self.db(self.store.outbox_postpone, [r.id for r in group], self.owner,
                              health.resting_until)
                report.held += len(group)
                continue
            try:
                await self._deliver_group(subs.get(sub_id), channel_name, group, report)
            except Exception as e:  # a bug here must not strand the rows: they are handed back
                log.error("delivery failed unexpectedly; will retry",
                          extra={"channel": channel_name, "error": f"{type(e).__name__}: {e}"})
                await self.db(self.store.outbox_postpone, [r.id for r in group], self.owner,
                              self.clock() + self.settings.retry_base)

    async def _deliver_group(self, sub: Subscription | None, channel_name: str,
                             group: list[outbox.OutboxRow], report: DeliveryReport) -> None:
        now = self.clock()
        if sub and (sub.digest_minutes > 0 or sub.throttle_max):
            # Folded into one message: every waiting alert of the pair, not just this page's.
            more = await self.db(outbox.claim_group, self.store, self.owner, sub.id, channel_name,
                                 now, self.lease, {r.id for r in group})
            group = group + more
        ids = [r.id for r in group]
        if sub and sub.digest_minutes > 0:
            first = await self.db(self.store.outbox_group_opened, sub.id, channel_name)
            opens = (first if first is not None else min(r.created for r in group)) + sub.digest_minutes * 60
            if now < opens:
                await self.db(self.store.outbox_postpone, ids, self.owner, opens)
                report.held += len(ids)
                return
            messages = [group]
        else:
            messages = [[r] for r in group]
        if sub and sub.throttle_max:
            per = sub.throttle_per or 3600
            sent = await self.db(self.store.messages_sent_since, sub.id, channel_name, now - per)
            budget = sub.throttle_max - len(sent)
            if budget <= 0 and sent:
                await self.db(self.store.outbox_postpone, ids, self.owner, sent[0] + per)
                report.held += len(ids)
                return
            if len(messages) > budget:
                flat = [r for m in messages for r in m]
                messages = [[r] for r in flat[:budget - 1]] + [flat[budget - 1:]]
        channel = self.channels.get(channel_name)
        health = self.health[channel_name]
        for i, msg in enumerate(messages):
            msg_ids = [r.id for r in msg]
            if self._stop is not None and self._stop.is_set():  # shutting down: hand the rest back
                await self.db(self.store.outbox_postpone, [r.id for m in messages[i:] for r in m],
                              self.owner, 0.0)
                return
            if not await self.db(self.store.renew_lease, msg_ids, self.owner, self.clock() + self.lease):
                log.warning("alert lease lost; another process will send it", extra={"channel": channel_name})
                continue
            try:
                if channel is None:
                    raise ChannelError(f"channel {channel_name!r} is not configured")
                await asyncio.wait_for(channel.send([r.item for r in msg]), self.settings.send_timeout)
            except Exception as e:  # a broken channel must not stop the others
                if isinstance(e, TimeoutError):
                    err = f"no answer within {self.settings.send_timeout:g} s"
                else:
                    err = str(e) if isinstance(e, ChannelError) else f"{type(e).__name__}: {e}"
                health.failures += 1
                health.last_error = err
                rest = self.retry_delay(health.failures - 1)
                health.resting_until = self.clock() + rest
                attempts = max(r.attempts for r in msg)
                await self.db(self.store.outbox_failed, msg_ids, self.owner, err,
                              self.clock() + max(rest, self.retry_delay(attempts)))
                rest_ids = [r.id for m in messages[i + 1:] for r in m]
                if rest_ids:  # the channel rests: its other messages wait with it
                    await self.db(self.store.outbox_postpone, rest_ids, self.owner, health.resting_until)
                log.warning("alert delivery failed; the channel rests before the next try",
                            extra={"channel": channel_name, "items": len(msg), "error": err,
                                   "failures_in_a_row": health.failures, "retry_in": round(rest)})
                report.failures += 1
                report.errors.append(err)
                metrics.count(metrics.alert_failures, channel_name)
                return
            health.failures, health.resting_until, health.last_error = 0, 0.0, ""
            await self.db(self.store.outbox_sent, msg_ids, self.owner, self.clock(),
                          message_id([r.item for r in msg]))
            report.messages += 1
            report.items += len(msg)
            metrics.count(metrics.alerts_sent, channel_name)
            sent_at = self.clock()
            metrics.queue_to_sent.observe_many(sent_at - r.created for r in msg)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # cleared BEFORE the round: a wake that arrives while it runs (alerts queued after it
            # read the outbox) must start the next round at once, not wait deliver_interval
            self.wake.clear()
            try:
                await self.run_once(stop=stop)
            except Exception as e:
                log.error("delivery round failed; retrying next round",
                          extra={"error": f"{type(e).__name__}: {e}"})
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            await asyncio.wait(waiters, timeout=self.settings.deliver_interval,
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
