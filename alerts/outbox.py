"""The durable outbox: an alert is committed here before any attempt to send it.

One row per (subscription, article, channel), enforced by a UNIQUE constraint, so a rule can
never alert twice for the same article on the same channel, however often the article is
re-fetched, updated or re-matched (and whichever worker matched it). Rows are marked sent only
after the channel accepted them; a crash in between re-sends on restart (at-least-once, with a
stable delivery id receivers can deduplicate on)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
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
    added = 0
    with store._tx():
        for channel, item in items:
            cur = store.conn.execute(
                "INSERT OR IGNORE INTO outbox (delivery_id, subscription_id, article_id, channel, "
                "payload, next_attempt, created) VALUES (?,?,?,?,?,?,?)",
                (delivery_id(item.subscription_id, item.article_id, channel), item.subscription_id,
                 item.article_id, channel, item_to_json(item), now, now))
            added += cur.rowcount
        store.conn.executemany("UPDATE articles SET matched = 1 WHERE rowid = ? AND version = ?",
                               list(matched_keys))
    return added


def pending(store: Store, now: float) -> list[OutboxRow]:
    rows = store.conn.execute(
        "SELECT id, subscription_id, channel, attempts, created, payload FROM outbox "
        "WHERE status = 'pending' ORDER BY id").fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], item_from_json(r[5])) for r in rows]


def due_ids(store: Store, now: float) -> set[int]:
    return {r[0] for r in store.conn.execute(
        "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ?", (now,))}


def mark_sent(store: Store, ids: Sequence[int], now: float, message_id: str) -> None:
    """Record that one message (a single alert or a digest) carried these rows."""
    with store._tx():
        store.conn.executemany("UPDATE outbox SET status = 'sent', sent = ?, message_id = ?, "
                               "attempts = attempts + 1, last_error = NULL WHERE id = ?",
                               [(now, message_id, i) for i in ids])


def mark_failed(store: Store, ids: Sequence[int], error: str, next_attempt: float) -> None:
    with store._tx():
        store.conn.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                               "next_attempt = ? WHERE id = ?", [(error, next_attempt, i) for i in ids])


def postpone(store: Store, ids: Sequence[int], until: float) -> None:
    with store._tx():
        store.conn.executemany("UPDATE outbox SET next_attempt = ? WHERE id = ?", [(until, i) for i in ids])


def messages_sent_since(store: Store, subscription_id: str, channel: str, since: float) -> list[float]:
    """Send times of the messages (a digest counts once) a subscription sent on a channel."""
    return [r[0] for r in store.conn.execute(
        "SELECT min(sent) FROM outbox WHERE subscription_id = ? AND channel = ? AND sent >= ? "
        "GROUP BY message_id ORDER BY 1", (subscription_id, channel, since))]


def backlog(store: Store) -> dict[str, int]:
    return dict(store.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())


def sent_count(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]


