"""Plain in-process counters the service keeps while it works; the web side's /metrics reads
them (and turns them into Prometheus metrics), so nothing below raqib/ depends on the web."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable

# Seconds: news arrives within minutes to days of publication; alerts within seconds to hours.
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0,
                   12 * 3600.0, 86400.0, 7 * 86400.0)

_lock = threading.Lock()


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe_many(self, values: Iterable[float]) -> None:
        with _lock:
            for v in values:
                v = max(0.0, v)
                self.counts[bisect_left(self.buckets, v)] += 1
                self.sum += v
                self.count += 1

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """([(upper bound, cumulative count)…, (inf, count)], sum, count)."""
        with _lock:
            counts, total, n = list(self.counts), self.sum, self.count
        out, running = [], 0
        for bound, c in zip((*self.buckets, float("inf")), counts, strict=True):
            running += c
            out.append((bound, running))
        return out, total, n


polls: Counter[str] = Counter()  # by outcome: ok, not-modified, error, retry-later
poll_errors: Counter[str] = Counter()  # by kind: http, network, parse, internal, …
alerts_sent: Counter[str] = Counter()  # by channel
alert_failures: Counter[str] = Counter()  # by channel
publish_to_fetch = Histogram()  # a new article's fetch time minus its publication time
fetch_to_alert = Histogram()  # an alert entering the outbox minus its article's fetch time
queue_to_sent = Histogram()  # an alert sent minus its entering the outbox


def count(counter: Counter[str], key: str, n: int = 1) -> None:
    with _lock:
        counter[key] += n


def counts(counter: Counter[str]) -> dict[str, int]:
    with _lock:
        return dict(counter)


def error_kind(e: BaseException) -> str:
    """A feed failure's kind for counting: http (a status), network, too-large, parse,
    retry-later, internal."""
    from monitor.errors import FetchError, ParseError, ResponseTooLarge, RetryLater

    if isinstance(e, RetryLater):
        return "retry-later"
    if isinstance(e, ResponseTooLarge):
        return "too-large"
    if isinstance(e, FetchError):
        return "http" if e.status else "network"
    if isinstance(e, ParseError):
        return "parse"
    return "internal" if not hasattr(e, "reason") else "feed"
