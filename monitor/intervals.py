"""When a feed is next due: adaptive to how often it publishes, backing off on errors.

Pure functions of the feed's history and the schedule settings (no I/O, no clock reads)."""

from __future__ import annotations

from monitor.config import ScheduleConfig


def clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def next_interval(current: float | None, new_items: int, s: ScheduleConfig,
                  ttl_seconds: float | None = None, fixed: float | None = None) -> float:
    """Sooner after a poll that found news, later after an idle one, within the bounds.

    A feed's own RSS <ttl> is a floor: polling faster than the publisher asks is wasted."""
    if fixed:
        return fixed
    cur = current or s.default_interval
    if new_items > 0:
        cur = cur * (0.5 if new_items >= 5 else 0.75)
    else:
        cur = cur * 1.25
    lo = max(s.min_interval, ttl_seconds or 0)
    return clamp(cur, min(lo, s.max_interval), s.max_interval)


def error_delay(interval: float, error_count: int, s: ScheduleConfig,
                retry_after: float | None = None) -> float:
    """Back-off for a failing feed: doubles with each consecutive error, honours Retry-After."""
    delay = min(s.error_backoff_max, interval * 2 ** max(0, error_count - 1))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
