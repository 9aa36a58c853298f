"""Subscriptions: saved queries with channels, from alerts.yaml and added at run time.

They live in the store so the CLI can add one while the service runs; the service notices
the change (`version`) and reloads its matcher."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.config import SubscriptionConfig
from monitor.query import parse
from monitor.store import Store, iso


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

    @classmethod
    def from_config(cls, c: SubscriptionConfig) -> Subscription:
        return cls(c.id, c.name or c.id, c.query, tuple(c.channels),
                   c.throttle.max if c.throttle else None, c.throttle.per if c.throttle else None,
                   c.digest_minutes, "file")


def _row(s: Subscription) -> tuple:
    return (s.id, s.name, s.query, json.dumps(list(s.channels)), s.throttle_max, s.throttle_per,
            s.digest_minutes, s.origin, iso(datetime.now(UTC)))


def save(store: Store, sub: Subscription) -> None:
    parse(sub.query)  # refuse what the matcher could not load
    with store._tx():
        store.conn.execute(
            "INSERT INTO subscriptions (id, name, query, channels, throttle_max, throttle_per, "
            "digest_minutes, origin, created) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, query=excluded.query, channels=excluded.channels, "
            "throttle_max=excluded.throttle_max, throttle_per=excluded.throttle_per, "
            "digest_minutes=excluded.digest_minutes, origin=excluded.origin", _row(sub))


def remove(store: Store, sub_id: str) -> bool:
    with store._tx():
        return store.conn.execute("DELETE FROM subscriptions WHERE id=?", (sub_id,)).rowcount > 0


def load_all(store: Store) -> list[Subscription]:
    rows = store.conn.execute(
        "SELECT id, name, query, channels, throttle_max, throttle_per, digest_minutes, origin "
        "FROM subscriptions ORDER BY id").fetchall()
    return [Subscription(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7]) for r in rows]


def version(store: Store) -> tuple:
    """Changes whenever a subscription is added, changed or removed."""
    return tuple(store.conn.execute(
        "SELECT count(*), group_concat(id || query || channels, '|') FROM subscriptions").fetchone())


def sync_from_config(store: Store, configured: tuple[SubscriptionConfig, ...]) -> None:
    """alerts.yaml is authoritative for the subscriptions it defines; CLI-added ones stay."""
    wanted = {c.id: Subscription.from_config(c) for c in configured}
    for s in load_all(store):
        if s.origin == "file" and s.id not in wanted:
            remove(store, s.id)
    for s in wanted.values():
        save(store, s)
