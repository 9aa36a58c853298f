"""Subscriptions: saved queries with channels, from alerts.yaml and added at run time.

They live in the store so the CLI can add one while the service runs; the service notices
the change (`version`) and reloads its matcher."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.config import SubscriptionConfig
from monitor.query import parse
from monitor.store import Store


@dataclass(frozen=True)
class Subscription:
    id: str
    name: str
    query: str
    channels: tuple[str, ...]
    throttle_max: int | None = None
    throttle_per: float | None = None
    digest_minutes: float = 0
    origin: str = "cli"
    backfill: bool = False  # also alert on feeds' back catalogue and on articles older than max_age
    created: float = 0.0  # epoch seconds; alerts only on articles stored after it

    def wants(self, stored: float, backfill: bool, published: datetime, now: datetime,
              max_age: timedelta) -> bool:
        """Whether an article may alert this subscription: stored after the subscription was
        made, and (unless it asks for back catalogue) neither a feed's first-fetch back
        catalogue nor published longer than `max_age` ago."""
        if stored and self.created and stored < self.created:
            return False
        if self.backfill:
            return True
        return not backfill and published >= now - max_age

    @classmethod
    def from_config(cls, c: SubscriptionConfig) -> Subscription:
        return cls(c.id, c.name or c.id, c.query, tuple(c.channels),
                   c.throttle.max if c.throttle else None, c.throttle.per if c.throttle else None,
                   c.digest_minutes, "file", getattr(c, "backfill", False))


def _row(s: Subscription) -> tuple:
    return (s.id, s.name, s.query, json.dumps(list(s.channels)), s.throttle_max, s.throttle_per,
            s.digest_minutes, s.origin, int(s.backfill), s.created)  # 0: stamped by the store


def save(store: Store, sub: Subscription) -> None:
    parse(sub.query)  # refuse what the matcher could not load
    store.save_subscription(_row(sub))


def remove(store: Store, sub_id: str) -> bool:
    return store.remove_subscription(sub_id)


def load_all(store: Store, ids: Iterable[str] | None = None) -> list[Subscription]:
    """Every subscription, or only those with the given ids."""
    return [Subscription(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7], bool(r[8]), r[9])
            for r in store.subscription_rows(ids)]


def version(store: Store) -> tuple:
    """Changes whenever a subscription is added, changed or removed."""
    return store.subscriptions_version()


def sync_from_config(store: Store, configured: tuple[SubscriptionConfig, ...]) -> None:
    """alerts.yaml is authoritative for the subscriptions it defines; CLI-added ones stay."""
    wanted = {c.id: Subscription.from_config(c) for c in configured}
    for s in load_all(store):
        if s.origin == "file" and s.id not in wanted:
            remove(store, s.id)
    for s in wanted.values():
        save(store, s)
