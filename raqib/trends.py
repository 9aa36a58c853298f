"""Trend series for people: only the topics asked about, one row per interval, gaps as zero.

Backends return sparse (bucket, topic, count) rows; a chart or a table needs every interval,
and a `topic:kursk` query should not list the other topics its articles also carry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from indexers.base import TrendBucket
from monitor.query import Not, Topic, parse

STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_BUCKETS = 5_000  # the most recent ones; one article dated 1970 cannot explode the series


def asked_topics(query: str | None) -> set[str]:
    """Topic ids a query names (topic:…), anywhere in it; empty when it names none."""
    if not query:
        return set()
    out: set[str] = set()
    stack = [parse(query)]
    while stack:
        node = stack.pop()
        if isinstance(node, Topic):
            out.add(node.id)
        elif not isinstance(node, Not):  # -topic:nato asks about everything but nato
            stack.extend(getattr(node, "children", ()) or ())
    return out


def series(buckets: Sequence[TrendBucket], interval: str, topics: Iterable[str] = ()
           ) -> tuple[list[datetime], dict[str, list[int]]]:
    """(every bucket start from the first to the last, {topic: counts aligned with them})."""
    wanted = set(topics)
    rows = [b for b in buckets if not wanted or b.topic in wanted]
    if not rows:
        return [], {t: [] for t in sorted(wanted)}
    step = STEP[interval]
    last = max(b.bucket for b in rows)
    first = max(min(b.bucket for b in rows), last - (MAX_BUCKETS - 1) * step)
    n = int((last - first) / step) + 1
    times = [first + i * step for i in range(n)]
    index = {t: i for i, t in enumerate(times)}
    out = {t: [0] * n for t in sorted(wanted or {b.topic for b in rows})}
    for b in rows:
        i = index.get(b.bucket)
        if i is not None:
            out[b.topic][i] += b.count
    return times, out
