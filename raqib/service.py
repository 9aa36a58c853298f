"""The long-running service (`raqib run`) and the single pass (`raqib once`).

One APScheduler job per feed, each with its own interval and jitter, coalesced, at most one
instance at a time. After each poll the job is re-timed from the feed's adaptive interval or
error back-off. On SIGINT/SIGTERM no new polls start, polls in flight finish, the queues are
drained and the outbox gets a last delivery round; whatever is left stays in the store."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from alerts.delivery import Deliverer, DeliveryReport, make_channels
from alerts.subscriptions import sync_from_config
from monitor import feedlist, retention
from monitor.config import Config, FeedConfig
from monitor.lock import DataDirLock
from raqib.pipeline import DrainReport, FeedReport, Pipeline

log = logging.getLogger("raqib.service")


async def start(pipeline: Pipeline) -> DrainReport:
    """Sync subscriptions from alerts.yaml and work off anything a previous run left queued.
    Called with the data-dir lock held: outbox leases found now belong to a dead process."""
    stale = await pipeline.db(pipeline.store.release_leases, None)
    if stale:
        log.info("released alerts leased by a process that died", extra={"alerts": stale})
    await pipeline.db(feedlist.sync_from_config, pipeline.store, pipeline.config.feeds)
    await pipeline.db(sync_from_config, pipeline.store, pipeline.config.alerts.subscriptions)
    report = await pipeline.drain()
    if report.indexed or report.matched:
        log.info("recovered queued work", extra={"indexed": report.indexed, "matched": report.matched})
    return report


def make_deliverer(pipeline: Pipeline) -> Deliverer:
    channels = make_channels(pipeline.config.alerts.channels, pipeline.config.settings.alerts.send_timeout)
    d = Deliverer(pipeline.store, pipeline.db, channels, pipeline.config.settings.alerts)
    pipeline.on_alerts.append(d.wake.set)
    return d


async def run_once(config: Config, on_feed=None, feeds: list[FeedConfig] | None = None,
                   force: bool = False) -> tuple[list[FeedReport], DrainReport, DeliveryReport]:
    """Poll every enabled feed once, index, match, deliver; then return.

    A feed in error back-off (or told to come back later by Retry-After) is skipped until it
    is due, so a cron job running `once` every minute is as polite as the service; `force`
    polls them anyway (`raqib once --force`)."""
    with DataDirLock(config.data_dir, "once"):
        async with Pipeline(config) as p:
            return await _once(p, config, on_feed, feeds, force)


async def _once(p: Pipeline, config: Config, on_feed, feeds: list[FeedConfig] | None, force: bool
                ) -> tuple[list[FeedReport], DrainReport, DeliveryReport]:
    await start(p)
    deliverer = make_deliverer(p)
    states = await p.db(p.store.feed_states)
    now = datetime.now(UTC)
    todo, skipped = [], []
    for f in feeds or await p.db(feedlist.enabled, p.store):
        st = states.get(f.url)
        if not force and st and st.error_count and st.next_due and st.next_due > now:
            skipped.append(FeedReport(f.id, f.url, "backing-off", error=st.last_error or "",
                                      next_due=st.next_due))
            if on_feed:
                on_feed(skipped[-1])
        else:
            todo.append(f)
    # Index and match while feeds are still being fetched and parsed, so the main
    # process's share of the work overlaps the parse workers' instead of following it.
    polling = asyncio.Event()
    polling.set()
    totals = DrainReport()

    async def drain_alongside() -> None:
        while polling.is_set():
            _add(totals, await p.drain())
            await asyncio.sleep(0.2)

    background = asyncio.create_task(drain_alongside())
    try:
        reports = skipped + await p.poll_all(todo, on_feed)
    finally:
        polling.clear()
        await background
    drained = _add(totals, await p.drain())
    try:
        delivered = await deliverer.run_once()
    finally:
        await deliverer.release()
    return reports, drained, delivered


def _add(total: DrainReport, part: DrainReport) -> DrainReport:
    total.indexed += part.indexed
    total.matched += part.matched
    total.alerts += part.alerts
    total.index_error = part.index_error or total.index_error
    return total


class Service:
    def __init__(self, config: Config):
        self.config = config
        self.stop = asyncio.Event()
        self.in_flight: set[asyncio.Task] = set()
        self.grace = config.settings.schedule.shutdown_grace
        self.counts: Counter[str] = Counter()
        self.web = None  # the web app's server (web.enabled), bound in _run before the poller starts

    async def run(self) -> None:
        with DataDirLock(self.config.data_dir, "run"):
            await self._run()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_stop, sig)
        if self.config.settings.web.enabled:
            from raqib.web.server import WebServer

            self.web = WebServer(self.config)  # a taken port or a missing token stops us here
        try:
            await self._serve()
        finally:
            if self.web is not None:
                await self.web.stop()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        async with Pipeline(self.config) as p:
            self.pipeline = p
            # Scheduled polls share the fetch budget (fetch.total_limit), so bodies cannot pile
            # up in front of the parse workers however many jobs come due at once.
            self.slots = asyncio.Semaphore(self.config.settings.fetch.total_limit)
            await start(p)
            deliverer = make_deliverer(p)
            delivery = asyncio.create_task(deliverer.run_forever(self.stop))
            states = await p.db(p.store.feed_states)
            sched = self.config.settings.schedule
            self.scheduler = AsyncIOScheduler(timezone=UTC, event_loop=loop)
            now = datetime.now(UTC)
            feeds = await p.db(feedlist.enabled, p.store)
            for feed in feeds:
                self._schedule(feed, states.get(feed.url), now, len(feeds))
            self._watch(feeds)
            self.scheduler.start()
            if self.web is not None:
                await self.web.start(p)
            log.info("service started", extra={"feeds": len(feeds), "data_dir": str(self.config.data_dir)})
            summary = asyncio.create_task(self._summaries(min(300.0, sched.default_interval)))
            await self.stop.wait()
            summary.cancel()
            if self.web is not None:  # before the pipeline closes: no request reaches a closed store
                await self.web.stop()
            log.info("stopping: finishing polls in flight", extra={"in_flight": len(self.in_flight)})
            # Pause, not shut down: APScheduler's shutdown cancels the running jobs at once,
            # and polls in flight deserve their grace period first.
            self.scheduler.pause()
            await self._finish_in_flight()
            self.scheduler.shutdown(wait=False)
            await p.drain()
            await delivery
            # One last round for what the drain queued, bounded like the polls: what it cannot
            # send in the grace period stays in the outbox for the next start.
            last = asyncio.Event()
            loop.call_later(max(self.grace, 1.0), last.set)
            try:
                await deliverer.run_once(stop=last)
            finally:
                await deliverer.release()
        log.info("service stopped")

    async def _finish_in_flight(self) -> None:
        """Let polls in flight finish within the grace period, then cancel and await the rest."""
        if not self.in_flight:
            return
        _, late = await asyncio.wait(set(self.in_flight), timeout=self.grace)
        if late:
            for t in late:
                t.cancel()
            await asyncio.wait(late, timeout=5)
            log.warning("polls still running at shutdown were cancelled; they are re-polled next start",
                        extra={"cancelled": len(late), "grace_seconds": self.grace})

    async def _summaries(self, every: float) -> None:
        """One line per period: what the polls of that period did (the service is not silent
        between feeds coming due, and a failing feed shows up without reading every line)."""
        while True:
            await asyncio.sleep(every)
            counts, self.counts = self.counts, Counter()
            if counts:
                log.info("poll summary", extra={"seconds": round(every), **dict(sorted(counts.items()))})

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("signal received", extra={"signal": sig.name})
        self.stop.set()

    async def _poll_job(self, feed: FeedConfig) -> None:
        if self.stop.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        try:
            async with self.slots:
                report = await self.pipeline.poll(feed)
            self.counts[report.status] += 1
            self.counts["new_articles"] += report.new
            await self.pipeline.drain()
            self._retime(feed, report)
        except asyncio.CancelledError:  # shutdown gave up on this poll; nothing was committed
            pass
        except Exception:
            log.exception("poll job failed", extra={"feed": feed.id})
        finally:
            self.in_flight.discard(task)

    def _schedule(self, feed: FeedConfig, st, now: datetime, n_feeds: int) -> None:
        """One job per feed: due when its state says (else soon, spread over the feeds), then
        every adaptive/fixed interval with jitter (`_retime` moves it after each poll)."""
        sched = self.config.settings.schedule
        interval = (st.interval if st and st.interval else None) or feed.interval or sched.default_interval
        first = st.next_due if st and st.next_due and st.next_due > now else (
            now + timedelta(seconds=random.uniform(0, min(10.0, n_feeds * 0.05))))
        if feed.interval and not (st and st.error_count):  # a fixed interval set or changed by the
            interval = feed.interval                       # user wins (never over an error back-off)
            first = min(first, now + timedelta(seconds=interval))
        self.scheduler.add_job(
            self._poll_job, IntervalTrigger(seconds=interval, jitter=sched.jitter),
            args=[feed], id=feed.id, name=feed.url, coalesce=True, max_instances=1,
            next_run_time=first, misfire_grace_time=int(interval), replace_existing=True)
        log.info("feed scheduled", extra={"feed": feed.id, "next_poll": first.isoformat(timespec="seconds"),
                                          "interval": round(interval)})

    FEEDLIST_CHECK_SECONDS = 2.0  # how soon a feed added by the CLI, API or pages is scheduled

    def _watch(self, feeds: list[FeedConfig]) -> None:
        """Housekeeping jobs: follow the feed list in the database, and apply retention daily."""
        self._feeds = {f.id: f for f in feeds}
        self._feeds_version: str | None = None
        self.scheduler.add_job(self._sync_feeds, IntervalTrigger(seconds=self.FEEDLIST_CHECK_SECONDS),
                               id="raqib:feedlist", coalesce=True, max_instances=1,
                               next_run_time=datetime.now(UTC))
        if self.config.settings.retention.days:
            self.scheduler.add_job(self._retention_job, IntervalTrigger(days=1), id="raqib:retention",
                                   coalesce=True, max_instances=1,
                                   next_run_time=datetime.now(UTC) + timedelta(seconds=5))

    async def _sync_feeds(self) -> None:
        """Schedule added feeds, unschedule removed or disabled ones, re-time edited ones, when
        the feed list's version moved (a poll in flight finishes either way)."""
        if self.stop.is_set():
            return
        p = self.pipeline
        try:
            v = await p.db(feedlist.version, p.store)
            if v == self._feeds_version:
                return
            wanted = {f.id: f for f in await p.db(feedlist.enabled, p.store)}
            states = await p.db(p.store.feed_states)
        except Exception:
            log.exception("could not read the feed list; the schedule stays as it is")
            return
        now = datetime.now(UTC)
        for fid in set(self._feeds) - set(wanted):
            if self.scheduler.get_job(fid):
                self.scheduler.remove_job(fid)
            log.info("feed unscheduled", extra={"feed": fid})
        for fid, feed in wanted.items():
            if self._feeds.get(fid) != feed:
                self._schedule(feed, states.get(feed.url), now, len(wanted))
        self._feeds, self._feeds_version = wanted, v

    async def _retention_job(self) -> None:
        p = self.pipeline
        try:
            await retention.apply(p.db, p.store, p.index, self.config.settings.retention.days,
                                  lock=p.drain_lock)
        except asyncio.CancelledError:  # shutdown: every batch deleted so far is committed
            log.info("retention interrupted by shutdown; it runs again at the next start")
        except Exception:
            log.exception("retention failed; it runs again tomorrow")

    def _retime(self, feed: FeedConfig, report: FeedReport) -> None:
        if report.next_due is None or self.stop.is_set():
            return
        if getattr(self, "_feeds", {}).get(feed.id, feed) != feed:
            return  # edited while this poll was in flight: the watcher has re-timed its job
        job = self.scheduler.get_job(feed.id)
        if job is None:
            return
        sched = self.config.settings.schedule
        interval = max(sched.min_interval, (report.next_due - datetime.now(UTC)).total_seconds())
        job.reschedule(IntervalTrigger(seconds=interval, jitter=sched.jitter,
                                       start_date=report.next_due))
