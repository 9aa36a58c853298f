"""The durable outbox: an alert is committed here before any attempt to send it.

One row per (subscription, article, channel), enforced by a UNIQUE constraint, so a rule can
never alert twice for the same article on the same channel, however often the article is
re-fetched, updated or re-matched (and whichever worker matched it). A sender first leases
the rows it is about to send (monitor.store.Store.claim_outbox), so two processes on one data
dir never send the same row; rows are marked sent only after the channel accepted them, and
a crash in between leaves a lease that expires and is retried with the same delivery id
(at-least-once to a channel, with an id receivers can deduplicate on)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.message import AlertItem
from monitor.store import Store, from_iso, iso


@dataclass(frozen=True)
class OutboxRow:
    id: int
    subscription_id: str
    channel: str
    attempts: int
    created: float
    item: AlertItem


def delivery_id(subscription_id: str, article_id: str, channel: str) -> str:
    return hashlib.blake2b(f"{subscription_id}\0{article_id}\0{channel}".encode(), digest_size=12).hexdigest()


def item_to_json(item: AlertItem) -> str:
    d = dict(item.__dict__)
    d["published"] = iso(item.published)
    d["topics"] = list(item.topics)
    return json.dumps(d, ensure_ascii=False)


def item_from_json(s: str) -> AlertItem:
    d = json.loads(s)
    d["published"] = from_iso(d["published"])
    d["topics"] = tuple(d["topics"])
    return AlertItem(**d)


def enqueue_and_mark(store: Store, items: Iterable[tuple[str, AlertItem]],
                     matched_keys: Iterable[tuple[int, int]], now: float) -> int:
    """Put (channel, item) alerts in the outbox and clear the articles' `matched` flag, atomically."""
    rows = [(delivery_id(it.subscription_id, it.article_id, ch), it.subscription_id, it.article_id, ch,
             item_to_json(it)) for ch, it in items]
    return store.enqueue_alerts(rows, matched_keys, now)


def claim(store: Store, owner: str, now: float, lease: float, limit: int = 500) -> list[OutboxRow]:
    """Lease the due rows (oldest first) to `owner` and return them."""
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], item_from_json(r[5]))
            for r in store.claim_outbox(owner, now, lease, limit)]


def backlog(store: Store) -> dict[str, int]:
    return store.outbox_backlog()


def claim_group(store: Store, owner: str, subscription_id: str, channel: str, now: float, lease: float,
                have: set[int]) -> list[OutboxRow]:
    """Lease every other pending row of one (subscription, channel), due or not: a digest or
    a throttled burst goes out as one message however many pages it spans."""
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], item_from_json(r[5]))
            for r in store.claim_outbox_group(owner, subscription_id, channel, now, lease) if r[0] not in have]
