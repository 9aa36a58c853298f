"""The delivery worker: sends what the outbox holds, honouring digests and throttles.

A channel failure postpones only that channel's rows (exponential back-off); nothing is ever
dropped. Throttled alerts wait for the window to reopen and are then folded into one digest
message, so a burst costs one message, not a lost alert."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def make_channels(specs: Mapping[str, dict]) -> dict[str, Any]:
    from alerts.channels import build_channel

    out: dict[str, Any] = {}
    for name, spec in specs.items():
        out[name] = LogChannel(name) if spec.get("type") == "log" else build_channel(name, dict(spec))
    return out


@dataclass
class DeliveryReport:
    messages: int = 0
    items: int = 0
    failures: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)


class Deliverer:
    def __init__(self, store: Store, db: DbRunner, channels: Mapping[str, Any],
                 settings: AlertSettings, clock: Callable[[], float] = time.time):
        self.store, self.db, self.channels, self.settings, self.clock = store, db, channels, settings, clock
        self.wake = asyncio.Event()

    def retry_delay(self, attempts: int) -> float:
        base = min(self.settings.retry_max, self.settings.retry_base * 2 ** attempts)
        return base * random.uniform(0.8, 1.0)

    async def run_once(self) -> DeliveryReport:
        report = DeliveryReport()
        now = self.clock()
        rows = await self.db(outbox.pending, self.store, now)
        if not rows:
            return report
        due = await self.db(outbox.due_ids, self.store, now)
        subs = {s.id: s for s in await self.db(load_all, self.store)}
        groups: dict[tuple[str, str], list[outbox.OutboxRow]] = defaultdict(list)
        for r in rows:
            groups[(r.subscription_id, r.channel)].append(r)
        for (sub_id, channel_name), group in groups.items():
            await self._deliver_group(subs.get(sub_id), channel_name, group, due, report)
        return report

    async def _deliver_group(self, sub: Subscription | None, channel_name: str,
                             group: list[outbox.OutboxRow], due: set[int], report: DeliveryReport) -> None:
        ready = [r for r in group if r.id in due]
        if not ready:
            return
        now = self.clock()
        ids = [r.id for r in ready]
        if sub and sub.digest_minutes > 0:
            opens = min(r.created for r in group) + sub.digest_minutes * 60
            if now < opens:
                await self.db(outbox.postpone, self.store, ids, opens)
                report.held += len(ids)
                return
            messages = [group]
        else:
            messages = [[r] for r in ready]
        if sub and sub.throttle_max:
            per = sub.throttle_per or 3600
            sent = await self.db(outbox.messages_sent_since, self.store, sub.id, channel_name, now - per)
            budget = sub.throttle_max - len(sent)
            if budget <= 0:
                await self.db(outbox.postpone, self.store, ids, sent[0] + per)
                report.held += len(ids)
                return
            if len(messages) > budget:
                flat = [r for m in messages for r in m]
                messages = [[r] for r in flat[:budget - 1]] + [flat[budget - 1:]]
        channel = self.channels.get(channel_name)
        for msg in messages:
            msg_ids = [r.id for r in msg]
            try:
                if channel is None:
                    raise ChannelError(f"channel {channel_name!r} is not configured")
                await channel.send([r.item for r in msg])
            except Exception as e:  # a broken channel must not stop the others
                err = str(e) if isinstance(e, ChannelError) else f"{type(e).__name__}: {e}"
                attempts = max(r.attempts for r in msg)
                await self.db(outbox.mark_failed, self.store, msg_ids, err,
                              self.clock() + self.retry_delay(attempts))
                log.warning("alert delivery failed; will retry",
                            extra={"channel": channel_name, "items": len(msg), "error": err})
                report.failures += 1
                report.errors.append(err)
                return
            await self.db(outbox.mark_sent, self.store, msg_ids, self.clock(),
                          message_id([r.item for r in msg]))
            report.messages += 1
            report.items += len(msg)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("delivery round failed")
            self.wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            await asyncio.wait(waiters, timeout=self.settings.deliver_interval,
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
