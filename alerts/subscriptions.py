"""Subscriptions: saved queries with channels, from alerts.yaml and added at run time.

They live in the store so the CLI, the API and the pages can manage them while the service
runs; the service notices the change (`version`) and reloads its matcher. What alerts.yaml
defines is managed by the file (origin "file"): every function here refuses to change it, with
a line naming the file. `create`, `delete`, `set_paused`, `preview`, `test_send` and
`delivery_log` are the one implementation the CLI, the API and the pages call."""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from monitor.config import Config, SubscriptionConfig
from monitor.errors import QueryError, RaqibError
from monitor.query import parse, validate
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
    paused: bool = False  # matched articles are not alerted while paused

    @property
    def managed_by_file(self) -> bool:
        return self.origin == "file"

    def wants(self, stored: float, backfill: bool, published: datetime, now: datetime,
              max_age: timedelta) -> bool:
        """Whether an article may alert this subscription: stored after the subscription was
        made, and (unless it asks for back catalogue) neither a feed's first-fetch back
        catalogue nor published longer than `max_age` ago."""
        if self.paused or (stored and self.created and stored < self.created):
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
    return [Subscription(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7], bool(r[8]), r[9],
                         r[10]) for r in store.subscription_rows(ids)]


def version(store: Store) -> tuple:
    """Changes whenever a subscription is added, changed or removed."""
    return store.subscriptions_version()


def sync_from_config(store: Store, configured: tuple[SubscriptionConfig, ...]) -> None:
    """alerts.yaml is authoritative for the subscriptions it defines; CLI-added ones stay."""
    wanted = {c.id: Subscription.from_config(c) for c in configured}
    have = {s.id: s for s in load_all(store)}
    gone = [i for i, s in have.items() if s.origin == "file" and i not in wanted]
    # Only what changed is written (queries were checked when alerts.yaml loaded): an unchanged
    # file leaves the change counter alone, so the matcher is not rebuilt at every start.
    changed = [_row(s) for i, s in wanted.items() if i not in have or _row(have[i])[:-1] != _row(s)[:-1]]
    if gone:
        store.remove_subscriptions(gone)
    if changed:
        store.save_subscriptions(changed)


# ------------------------------------------------------------------ management (CLI, API, pages)

FILE = "alerts.yaml"


class SubscriptionError(RaqibError):
    """A change that cannot be made; `kind` picks the CLI exit code or HTTP status:
    "invalid", "not-found", "exists", "managed"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def get(store: Store, sub_id: str) -> Subscription:
    found = load_all(store, [sub_id])
    if not found:
        raise SubscriptionError("not-found", f"no subscription {sub_id!r}")
    return found[0]


def refuse_managed(config: Config, store: Store, sub_id: str, what: str) -> Subscription | None:
    mine = next(iter(load_all(store, [sub_id])), None)
    if any(c.id == sub_id for c in config.alerts.subscriptions) or (mine is not None and mine.managed_by_file):
        raise SubscriptionError("managed", f"subscription {sub_id!r} is defined in {FILE}; {what} it there")
    return mine


def bad_id(sub_id: str) -> str | None:
    """Why an id given through the API, the pages or the CLI cannot name a subscription: each
    is a URL path segment (/api/v1/subscriptions/<id>), so no slash (it could never be reached
    to edit or remove), and no control or format character (NUL, bidi overrides) that would
    hide what it says in a list. None when it is fine (Arabic letters are)."""
    if not sub_id.strip() or sub_id != sub_id.strip():
        return "must not be empty or start or end with a space"
    if "/" in sub_id or "\\" in sub_id:
        return "must not contain '/' or '\\'"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in sub_id):
        return "must not contain control or invisible formatting characters"
    return None


def validated(config: Config, values: dict[str, Any], known_sources: Iterable[str] = ()) -> SubscriptionConfig:
    """A subscription from user input under the same rules as alerts.yaml (query, throttle and
    digest bounds, channels that exist, topics and sources that exist); one line when not."""
    try:
        c = SubscriptionConfig.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "subscription"
        raise SubscriptionError("invalid", f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
    if why := bad_id(c.id):
        raise SubscriptionError("invalid", f"id: {why}")
    unknown = [ch for ch in c.channels if ch not in config.alerts.channels]
    if unknown:
        raise SubscriptionError("invalid", f"channels: unknown channel {unknown[0][:40]!r}; channels in {FILE}: "
                                f"{', '.join(sorted(config.alerts.channels)) or '(none)'}")
    try:
        validate(parse(c.query), [t.id for t in config.topics], [*known_sources])
    except QueryError as e:
        raise SubscriptionError("invalid", f"query: {e}") from None
    return c


def known_sources(config: Config, store: Store) -> list[str]:
    """Feed ids a `source:` filter may name: configured, listed in the database, or still in
    the store."""
    from monitor import feedlist

    return sorted({f.id for f in config.feeds} | {f.id for f in feedlist.load(store)} | set(store.sources()))


def create(config: Config, store: Store, values: dict[str, Any], origin: str = "cli",
           replace: bool = False) -> Subscription:
    """Save a new subscription (id, query, channels, name, throttle {max, per}, digest_minutes,
    backfill). An existing id is replaced only with `replace` (keeping its paused state); one
    from alerts.yaml never."""
    sub_id = str(values.get("id", ""))
    mine = refuse_managed(config, store, sub_id, "change")
    c = validated(config, values, known_sources(config, store))
    if mine is not None and not replace:
        raise SubscriptionError("exists", f"subscription {c.id!r} exists ({mine.query})")
    sub = Subscription(c.id, c.name or c.id, c.query, tuple(c.channels),
                       c.throttle.max if c.throttle else None, c.throttle.per if c.throttle else None,
                       c.digest_minutes, origin, c.backfill, paused=mine.paused if mine else False)
    save(store, sub)
    return get(store, c.id)


def delete(config: Config, store: Store, sub_id: str) -> None:
    refuse_managed(config, store, sub_id, "remove")
    if not remove(store, sub_id):
        raise SubscriptionError("not-found", f"no subscription {sub_id!r}")


def set_paused(config: Config, store: Store, sub_id: str, paused: bool) -> Subscription:
    """Pause (no alerts for what is matched meanwhile) or resume; alerts.yaml's too, since a
    pause is an operator's switch, not part of the rule — it is kept across restarts."""
    if not store.set_subscription_paused(sub_id, paused):
        raise SubscriptionError("not-found", f"no subscription {sub_id!r}")
    return get(store, sub_id)


def as_dict(s: Subscription) -> dict[str, Any]:
    """The one JSON shape of a subscription (CLI --json, API); `created` is ISO 8601 UTC."""
    return {"id": s.id, "name": s.name, "query": s.query, "channels": list(s.channels),
            "throttle_max": s.throttle_max, "throttle_per": s.throttle_per,
            "digest_minutes": s.digest_minutes, "backfill": s.backfill, "paused": s.paused,
            "origin": s.origin, "managed_by": FILE if s.managed_by_file else None,
            "created": datetime.fromtimestamp(s.created, UTC).isoformat(timespec="seconds") if s.created else None}


async def preview(index, query: str, limit: int = 5):
    """What a query would have matched among the stored articles (the index's own search, so
    it is exactly what alerts fire on): a SearchPage with `total` and the newest hits."""
    return await index.search(query, limit=limit, sort="date")


async def would_match(config: Config, index, query: str, sources: Iterable[str], limit: int = 5) -> dict[str, Any]:
    """The editor's "would have matched N, e.g. …" (API and pages): the query checked as a
    subscription's is (`sources` from known_sources), then previewed; raises QueryError."""
    from monitor.hits import hit_json

    validate(parse(query), [t.id for t in config.topics], list(sources))
    page = await preview(index, query, limit)
    return {"query": query, "total": page.total, "examples": [hit_json(h) for h in page.hits]}


def delivery_log(store: Store, sub_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The outbox rows of one subscription, newest first."""
    def ts(v: float | None) -> str | None:
        return datetime.fromtimestamp(v, UTC).isoformat(timespec="seconds") if v else None

    return [{"article_id": a, "channel": ch, "status": st, "attempts": n, "last_error": err,
             "queued": ts(created), "sent": ts(sent)}
            for a, ch, st, n, err, created, sent in store.subscription_outbox(sub_id, limit)]


async def test_send(config: Config, sub: Subscription, article=None) -> dict[str, str]:
    """Send one test alert through each of the subscription's real channels (not the outbox:
    it is not an alert and must not be deduplicated against one). {channel: "sent" | error}."""
    from alerts.delivery import make_channels
    from alerts.message import AlertItem

    now = datetime.now(UTC)
    item = AlertItem(
        delivery_id=f"test-{sub.id}-{int(time.time())}", subscription_id=sub.id, subscription_name=sub.name,
        query=sub.query, article_id=article.id if article else "test",
        title=article.title if article else f"Raqib test alert for {sub.name}",
        source=article.source if article else "raqib", link=article.link if article else "",
        topics=tuple(article.topics) if article else (),
        snippet=(article.summary[:300] if article else "This is a test message; no article matched."),
        published=article.published if article else now, language=article.language if article else "en")
    channels = make_channels({n: config.alerts.channels[n] for n in sub.channels if n in config.alerts.channels},
                             config.settings.alerts.send_timeout)
    out: dict[str, str] = {}
    for name, ch in channels.items():
        try:
            await asyncio.wait_for(ch.send([item]), config.settings.alerts.send_timeout)
            out[name] = "sent"
        except Exception as e:  # noqa: BLE001 - each channel's own failure, reported, not raised
            out[name] = f"failed: {type(e).__name__}: {str(e)[:300]}"
    return out
