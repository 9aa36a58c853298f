"""Retention (`retention.days`, 0 = keep forever): old articles leave the index, then the store.

An article goes when it was both published and fetched more than `days` ago (one still in its
feed and fetched again stays, or the next poll would store it anew). Each batch is deleted
from the index first and only then from the store, so the index never points at rows that are
gone; an index that refuses leaves the batch for the next run. The store drops the articles'
topic rows and outbox rows in the same transaction, then gives the freed pages back to the
file system (see Store.compact). The service runs this daily."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.errors import IndexError_
from monitor.store import Store

log = logging.getLogger("raqib.retention")


@dataclass
class RetentionReport:
    articles: int = 0
    alerts: int = 0
    compacted: str = ""
    error: str = ""


async def apply(db, store: Store, index, days: float, now: datetime | None = None,
                batch: int = 1000, lock=None) -> RetentionReport:
    """Delete what is older than `days`; `db` runs a store call off the loop (Pipeline.db).
    `lock` (the pipeline's drain lock) is held for each batch: a drain that read the batch as
    queued must not add it to the index between its deletion there and in the store."""
    report = RetentionReport()
    if not days:
        return report
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    while True:
        async with lock or contextlib.nullcontext():
            ids = await db(store.articles_older_than, cutoff, batch)
            if not ids:
                break
            try:
                await index.delete(ids)
            except IndexError_ as e:
                report.error = str(e)[:500]
                log.error("retention: the index refused deletions; the articles stay until the next run",
                          extra={"error": report.error})
                break
            arts, alerts = await db(store.delete_articles, ids)
        report.articles += arts
        report.alerts += alerts
        if len(ids) < batch:
            break
    if report.articles:
        report.compacted = await db(store.compact)
        log.info("retention: old articles deleted", extra={
            "articles": report.articles, "alerts": report.alerts, "days": days, "compacted": report.compacted})
    return report
