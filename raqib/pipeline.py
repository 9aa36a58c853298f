"""fetch → parse → analyze → store → (index, match → outbox), one feed at a time.

The store commit is the acknowledgement point: a feed's new articles and its new validators
(ETag, Last-Modified) are committed together, so a crash before it re-fetches the same
articles and a crash after it finds them waiting in the index and match queues."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import signal
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from alerts import outbox
from alerts.outbox import delivery_id
from alerts.matcher import Matcher
from alerts.message import AlertItem
from alerts.subscriptions import Subscription, load_all, version
from indexers.base import ArticleIndex
from indexers.factory import make_index
from monitor import intervals, metrics
from monitor import analysis
from monitor.analysis import analyze_article, remember
from monitor.config import Config, FeedConfig
from monitor.dedup import Decision, decide
from monitor.errors import FeedError, IndexError_, ParseError, QueryError, RetryLater
from monitor.fetcher import Fetcher, FetchSettings
from monitor.highlight import Wanted, explain, wanted
from monitor.models import FeedState
from monitor.parser import ParsedFeed, canonical_link, parse_feed
from monitor.query import parse
from monitor.store import Pending, Store
from monitor.tagger import Tagger, TopicRule
from monitor.topics import build_tagger, rules_from_config

log = logging.getLogger("raqib.pipeline")

# ---- CPU stage, run in worker processes ----

_WORKER_TAGGER: Tagger | None = None
_WORKER_TIMEOUT = 0.0
_WORKER_MEMORY = 0
BACKPRESSURE_WAIT = 10.0  # seconds a parsed feed waits for a drain that makes no progress
HARD_DEADLINE_GRACE = 30.0  # seconds the parent adds to a worker's own deadline (start-up, queueing)


class _Deadline(BaseException):
    """Raised by SIGALRM inside a parse; a BaseException so no library's `except Exception`
    swallows it and carries on."""


def _on_alarm(signum, frame) -> None:
    raise _Deadline


def _die_with_parent() -> None:
    """A parse worker must not outlive a killed service (SIGKILL leaves no time to clean up)."""
    import os

    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown still applies
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _init_worker(rules: tuple[TopicRule, ...], memory_limit: int = 0, timeout: float = 0.0) -> None:
    """A hostile feed may cost a worker its memory or its time, never the machine's."""
    global _WORKER_TAGGER, _WORKER_TIMEOUT, _WORKER_MEMORY
    _die_with_parent()
    # Ctrl-C reaches the whole process group: the service decides how to stop, not its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit:
        _WORKER_MEMORY = memory_limit
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        except (ImportError, ValueError, OSError):
            pass
    if timeout and hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _on_alarm)
        _WORKER_TIMEOUT = timeout
    _WORKER_TAGGER = Tagger(rules)


def parse_and_analyze(body: bytes, headers: dict[str, str], url: str, source: str,
                      fetched: datetime, declared_language: str, tagger: Tagger | None = None) -> ParsedFeed:
    """Parse a feed body and tag its articles (in a worker process unless `tagger` is given).

    Whatever goes wrong is this feed's ParseError: a bug in a library, a MemoryError under the
    worker's cap, the deadline. Nothing unpicklable crosses back to break the pool."""
    timed = tagger is None and _WORKER_TIMEOUT > 0
    tagger = tagger or _WORKER_TAGGER
    assert tagger is not None
    try:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, _WORKER_TIMEOUT)
        try:
            parsed = parse_feed(body, headers, url, source, fetched)
            lang = declared_language or parsed.language
            return replace(parsed, articles=tuple(analyze_article(a, tagger, lang) for a in parsed.articles))
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except ParseError:
        raise
    except _Deadline:
        raise ParseError(url, f"parsing took longer than {_WORKER_TIMEOUT:g} s") from None
    except MemoryError:
        cap = f" ({_WORKER_MEMORY // 2**20:,} MB, parse.memory_mb)" if _WORKER_MEMORY else ""
        raise ParseError(url, f"parsing needed more memory than a parse worker may use{cap}") from None
    except Exception as e:
        raise ParseError(url, f"parsing failed: {type(e).__name__}: {e}"[:1000]) from None


class _BrokenBefore(BrokenProcessPool):
    """The pool was already broken when a parse was submitted: no verdict on that feed."""


class ParseWorkers(Executor):
    """Parse processes under a memory cap and a per-parse deadline, where one feed's failure
    stays its own.

    A worker that dies breaks its pool and every future in flight on it. The feeds that were
    in flight are re-run one at a time in a pool of their own: a feed that kills that pool too
    is the culprit and gets the ParseError; the others parse normally. A parse that ignores
    its in-worker deadline (stuck in C code) is stopped by killing its pool, the same way.
    With `workers == 0` parsing runs on a thread of this process: no cap and no deadline
    (for debugging and tests)."""

    def __init__(self, rules: tuple[TopicRule, ...], tagger: Tagger, workers: int,
                 memory_mb: int, timeout: float):
        self._rules, self._tagger, self._workers = rules, tagger, workers
        self._memory = memory_mb * 1024 * 1024
        self._timeout = timeout
        self._pool: Executor = (ThreadPoolExecutor(1, thread_name_prefix="raqib-parse") if workers == 0
                                else self._new_pool(workers))
        self._alone: Executor | None = None
        # Two parses per worker in flight: workers never idle, and a pool that breaks takes
        # few innocent feeds with it (the executor fails everything queued on it, too).
        self._slots = asyncio.Semaphore(max(1, 2 * workers))
        self._suspects = asyncio.Lock()

    @classmethod
    def from_config(cls, config: Config, tagger: Tagger | None = None, workers: int | None = None) -> ParseWorkers:
        p = config.settings.parse
        return cls(rules_from_config(config.topics), tagger or build_tagger(config.topics),
                   p.workers if workers is None else workers, p.memory_mb, p.timeout)

    def _new_pool(self, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self._rules, self._memory, self._timeout))

    def submit(self, fn, /, *args, **kwargs):
        """Other CPU work may share the parse pool (Executor interface)."""
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for pool in (self._pool, self._alone):
            if pool is not None:
                pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def kill(self) -> None:
        """Stop now: parses still running (a poll cancelled at shutdown) are abandoned, their
        processes killed, so closing never waits on a parse stuck in C code."""
        for pool in (self._pool, self._alone):
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.kill()
        self.shutdown(wait=False, cancel_futures=True)

    async def parse(self, body: bytes, headers: dict[str, str], feed: FeedConfig,
                    now: datetime) -> ParsedFeed:
        args = (body, headers, feed.url, feed.id, now, feed.language)
        if self._workers == 0:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, parse_and_analyze, *args, self._tagger)
        async with self._slots:
            for _ in range(2):
                pool = self._pool
                try:
                    return await self._run(pool, args, feed.url)
                except _BrokenBefore:  # another feed broke it a moment ago: use the fresh one
                    self._retire(pool)
                except BrokenProcessPool:
                    self._retire(pool)
                    break
        async with self._suspects:  # this feed, or another in flight with it, killed a worker
            for _ in range(3):
                if self._alone is None:
                    self._alone = self._new_pool(1)
                alone = self._alone
                try:
                    return await self._run(alone, args, feed.url)
                except _BrokenBefore:  # broken before this feed was handed to it
                    self._retire(alone)
                except BrokenProcessPool:
                    self._retire(alone)
                    break
            raise ParseError(feed.url, "the parser process died on this feed (out of memory or crashed)")

    async def _run(self, pool: Executor, args: tuple, url: str) -> ParsedFeed:
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, parse_and_analyze, *args)
        except BrokenProcessPool:
            raise _BrokenBefore from None
        try:
            return await asyncio.wait_for(future, 2 * self._timeout + HARD_DEADLINE_GRACE)
        except TimeoutError:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.kill()  # the only way to stop a parse stuck in C code
            self._retire(pool)
            raise ParseError(url, f"parsing took longer than {self._timeout:g} s; "
                                  "the parser process was stopped") from None

    def _retire(self, pool: Executor) -> None:
        """A broken pool is replaced once, by whichever of its feeds notices first."""
        if pool is self._pool:
            self._pool = self._new_pool(self._workers)
        elif pool is self._alone:
            self._alone = None
        else:
            return
        pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class FeedReport:
    feed_id: str
    url: str
    status: str  # ok | not-modified | error | retry-later
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    items: int = 0
    encoding: str = ""
    error: str = ""
    warnings: tuple[str, ...] = ()
    elapsed: float = 0.0
    next_due: datetime | None = None


@dataclass
class DrainReport:
    indexed: int = 0
    matched: int = 0
    alerts: int = 0
    index_error: str = ""


def fetch_settings(config: Config) -> FetchSettings:
    return FetchSettings(**config.settings.fetch.model_dump())


class Pipeline:
    def __init__(self, config: Config, index: ArticleIndex | None = None, workers: int | None = None):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = config.data_dir / "raqib.db"
        self.store = Store(self.db_path)
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="raqib-store")
        self.index = index or make_index(config, self.db_path)
        self.tagger = build_tagger(config.topics)
        self._workers = config.settings.parse.workers if workers is None else workers
        self._cpu = self._make_cpu_pool()
        self.fetcher = Fetcher(fetch_settings(config))
        self.matcher = Matcher()
        self.subscriptions: dict[str, Subscription] = {}
        self._subs_version: tuple | None = None
        self._drain_lock = asyncio.Lock()
        self.drain_lock = self._drain_lock  # retention holds it per batch (monitor.retention.apply)
        self._percolator = hasattr(self.index, "percolate")
        self._keys: dict[str, Wanted] = {}
        self._worker_id: str | None = None
        self._reserved = 0  # articles of polls past backpressure, not yet stored
        self._room = asyncio.Event()  # set (and replaced) when a drain has matched a page
        self.on_alerts: list = []  # callbacks woken when the outbox grows

    def _make_cpu_pool(self) -> ParseWorkers:
        return ParseWorkers.from_config(self.config, self.tagger, self._workers)

    async def __aenter__(self) -> Pipeline:
        await self.fetcher.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.fetcher.__aexit__(None, None, None)
        await self.index.close()
        self._cpu.kill()
        await self.db(self.store.close)
        self._db_pool.shutdown(wait=True)

    async def db(self, fn, *args):
        """Run a store call on the store's own thread (SQLite stays off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)

    # ---- one feed ----

    async def poll(self, feed: FeedConfig) -> FeedReport:
        started = time.monotonic()
        state = await self.db(self.store.feed_state, feed.url)
        now = datetime.now(UTC)
        report = FeedReport(feed.id, feed.url, "ok")
        sched = self.config.settings.schedule
        try:
            result = await self.fetcher.fetch(feed.url, state.etag, state.last_modified)
            if result.not_modified:
                report.status = "not-modified"
                interval = intervals.next_interval(state.interval, 0, sched, fixed=feed.interval)
                new_state = replace(state, error_count=0, last_error=None, interval=interval,
                                    last_fetched=now, next_due=now + timedelta(seconds=interval),
                                    last_status=result.status,
                                    etag=result.etag or state.etag,
                                    last_modified=result.last_modified or state.last_modified)
                await self.db(self.store.save_feed_state, new_state)
            else:
                parsed = await self._parse(result.body or b"", result.headers, feed, now)
                report.items, report.encoding, report.warnings = (
                    len(parsed.articles), parsed.encoding, parsed.warnings)
                for w in parsed.warnings:
                    log.warning("feed is malformed; kept what could be read",
                                extra={"feed": feed.id, "url": feed.url, "problem": w})
                ttl = parsed.ttl_minutes * 60 if parsed.ttl_minutes else None

                def state_after(d: Decision) -> FeedState:
                    interval = intervals.next_interval(state.interval, len(d.new), sched, ttl, feed.interval)
                    return replace(state, etag=result.etag, last_modified=result.last_modified,
                                   error_count=0, last_error=None, interval=interval, last_fetched=now,
                                   last_new=now if d.new else state.last_new,
                                   next_due=now + timedelta(seconds=interval),
                                   last_status=result.status, last_items=len(parsed.articles))

                reserved = await self._backpressure(len(parsed.articles))
                try:
                    d, new_state = await self.db(self._decide_and_store, parsed.articles, state_after)
                finally:
                    self._reserved -= reserved
                report.new, report.updated, report.unchanged = len(d.new), len(d.updated), d.unchanged
                metrics.publish_to_fetch.observe_many((now - a.published).total_seconds() for a in d.new)
        except Exception as e:  # whatever failed, it is this feed's recorded error, with back-off
            if isinstance(e, FeedError):
                reason = e.reason
            else:
                log.exception("feed poll failed unexpectedly", extra={"feed": feed.id, "url": feed.url})
                reason = f"internal error: {type(e).__name__}: {e}"[:1000]
            retry_after = e.retry_after if isinstance(e, RetryLater) else None
            report.status = "retry-later" if retry_after is not None else "error"
            report.error = reason
            metrics.count(metrics.poll_errors, metrics.error_kind(e))
            count = state.error_count + 1
            base = state.interval or feed.interval or sched.default_interval
            delay = intervals.error_delay(base, count, sched, retry_after)
            new_state = replace(state, error_count=count, last_error=reason, last_fetched=now,
                                next_due=now + timedelta(seconds=delay), last_status=getattr(e, "status", None))
            await self.db(self.store.save_feed_state, new_state)
            log.error("feed failed", extra={"feed": feed.id, "url": feed.url, "error": reason,
                                            "errors_in_a_row": count, "retry_in": round(delay)})
        report.elapsed = time.monotonic() - started
        report.next_due = new_state.next_due
        metrics.count(metrics.polls, report.status)
        if report.status == "ok":
            log.info("feed polled", extra={"feed": feed.id, "items": report.items, "new": report.new,
                                           "updated": report.updated, "seconds": round(report.elapsed, 3)})
        return report

    def _decide_and_store(self, articles, state_after) -> tuple[Decision, FeedState]:
        """Dedup decision and commit in one step on the store thread, so two feeds carrying
        the same story at the same moment cannot both find it new. What a feed carries on its
        first successful fetch is its back catalogue: stored, but not news to alert on."""
        known = self.store.known(a.id for a in articles)
        by_link = self.store.ids_for_links(canonical_link(a.link) for a in articles)
        d = decide(articles, known, by_link)
        new_state = replace(state_after(d), seeded=True)
        first = not self.store.feed_state(new_state.url).seeded
        self.store.ingest(d.new, d.updated, d.link_keys, new_state, backfill=first,
                          seen=set(known) | set(by_link.values()), seen_at=new_state.last_fetched)
        if not self._percolator:  # the drain reads them back from the store: with their analysis
            remember(d.new)
            remember(d.updated)
        return d, new_state

    async def _backpressure(self, n: int) -> int:
        """Hold a parsed feed of `n` articles back while the drain is far behind; returns
        the articles reserved (release them once stored). The main process is then the
        bottleneck: waiting costs no time, storing on would push analyses out of the hand-off
        and cost re-analysis. A poll waits as long as the drain makes progress (reads shipped
        analyses, for the index or the matcher); a drain stuck for BACKPRESSURE_WAIT seconds
        (an index that is down) lets it through. Check and reservation happen with no await
        between, so concurrent polls cannot all pass at once."""
        if self._percolator:
            return 0
        deadline = time.monotonic() + BACKPRESSURE_WAIT
        seen = analysis.reads()
        while ((analysis.backlog() or self._reserved)
               and analysis.backlog() + self._reserved + n > analysis.BACKLOG_HIGH):
            # Woken by the drain, not a tight timer: a hundred polls waiting on 50 ms sleeps
            # cost the main process seconds of CPU over a long catch-up.
            try:
                await asyncio.wait_for(self._room.wait(), 0.5)
            except TimeoutError:
                pass
            if (r := analysis.reads()) != seen:
                seen, deadline = r, time.monotonic() + BACKPRESSURE_WAIT
            elif time.monotonic() >= deadline:
                break
        self._reserved += n
        return n

    async def _parse(self, body: bytes, headers: dict[str, str], feed: FeedConfig,
                     now: datetime) -> ParsedFeed:
        return await self._cpu.parse(body, headers, feed, now)

    async def poll_all(self, feeds: list[FeedConfig], on_done=None) -> list[FeedReport]:
        """Poll many feeds concurrently; one feed's failure never affects another."""
        sem = asyncio.Semaphore(self.config.settings.fetch.total_limit)

        async def one(f: FeedConfig) -> FeedReport:
            async with sem:
                try:
                    r = await self.poll(f)
                except Exception as e:  # a bug on one feed must not stop the poll
                    log.exception("feed crashed", extra={"feed": f.id, "url": f.url})
                    r = FeedReport(f.id, f.url, "error", error=f"{type(e).__name__}: {e}")
            if on_done:
                on_done(r)
            return r

        return list(await asyncio.gather(*(one(f) for f in feeds)))

    # ---- index and match queues ----

    async def drain(self, batch: int = 500) -> DrainReport:
        """Work off the index and match queues (also what start-up recovery does), page by page."""
        report = DrainReport()
        async with self._drain_lock:
            # Match only what was stored before the index's turn: an article stored while the
            # index worked waits for the next drain, so the index reads its shipped analysis
            # before the matcher (its last reader) consumes it.
            upto = await self.db(self.store.max_rowid)
            report.indexed, report.index_error = await drain_index(self.db, self.store, self.index, batch)
            after = 0
            while True:
                pending = await self.db(self.store.pending, "matched", batch, after, upto)
                if not pending:
                    break
                after = pending[-1].key[0]
                try:
                    await self._refresh_matcher()
                    items = await self._match(pending)
                except IndexError_ as e:
                    log.error("alert matching unavailable; articles stay queued", extra={"error": str(e)[:500]})
                    break
                queued = time.time()
                added = await self.db(outbox.enqueue_and_mark, self.store, items,
                                      [p.key for p in pending], queued)
                fetched = {p.article.id: p.article.fetched.timestamp() for p in pending}
                metrics.fetch_to_alert.observe_many(queued - fetched[it.article_id] for _, it in items)
                report.matched += len(pending)
                report.alerts += added
                room, self._room = self._room, asyncio.Event()
                room.set()  # polls held back by _backpressure look again
                if len(pending) < batch:
                    break
        if report.alerts:
            for cb in self.on_alerts:
                cb()
        return report

    async def _refresh_matcher(self) -> None:
        v = await self.db(version, self.store)
        if v == self._subs_version:
            return
        # Parsing 100k rules and building the matcher takes seconds: never on the event loop.
        subs, self._keys = await asyncio.to_thread(_loadable, await self.db(load_all, self.store))
        self.subscriptions = {s.id: s for s in subs}
        if self._percolator:
            await self.index.put_subscriptions([(s.id, s.query) for s in subs])  # type: ignore[attr-defined]
        else:
            self.matcher = await asyncio.to_thread(Matcher, [(s.id, s.query) for s in subs])
        self._subs_version = v

    async def _match(self, pending: list[Pending]) -> list[tuple[str, AlertItem]]:
        """Alerts for a batch: in-process matcher, or the cluster's percolator (one request per
        batch) with a cluster-wide claim so two workers never alert the same thing twice."""
        articles = [p.article for p in pending]
        if not self._percolator:
            matcher = self.matcher
            matches = await asyncio.to_thread(lambda: {a.id: matcher.match(a) for a in articles})
            return await asyncio.to_thread(self._alerts_for, pending, matches)
        matches = await self.index.percolate(articles)  # type: ignore[attr-defined]
        items = await asyncio.to_thread(self._alerts_for, pending, matches)
        if self._worker_id is None:
            self._worker_id = await self.db(self.store.worker_id)
        mine = await self.index.claim_deliveries(  # type: ignore[attr-defined]
            [it.delivery_id for _, it in items], self._worker_id)
        return [(ch, it) for ch, it in items if it.delivery_id in mine]

    def _alerts_for(self, pending: list[Pending], matches: dict[str, list[str]]) -> list[tuple[str, AlertItem]]:
        """(channel, item) for every match a subscription wants (see Subscription.wants: no
        back catalogue, nothing older than alerts.max_age, nothing stored before it)."""
        items = []
        now = datetime.now(UTC)
        max_age = timedelta(seconds=self.config.settings.alerts.max_age)
        for p in pending:
            a = p.article
            for sid in sorted(matches.get(a.id, ())):
                sub = self.subscriptions.get(sid)
                if sub is None:  # removed since the cluster matched it
                    continue
                if not sub.wants(p.stored, p.backfill, a.published, now, max_age):
                    continue
                # the query's words and topics; a rule without any shows the article's mentions
                _, snip = explain(a, self._keys[sid] or Wanted(topics=frozenset(a.topics)))
                for ch in sub.channels:
                    items.append((ch, AlertItem(
                        delivery_id=delivery_id(sid, a.id, ch), subscription_id=sid,
                        subscription_name=sub.name, query=sub.query, article_id=a.id, title=a.title,
                        source=a.source, link=a.link, topics=a.topics, snippet=snip.text,
                        published=a.published, language=a.language,
                        snippet_marks=tuple((m.start, m.end, m.topic) for m in snip.marks),
                        snippet_field=snip.field)))
        return items


def _loadable(subs: list[Subscription]) -> tuple[list[Subscription], dict[str, Wanted]]:
    """The subscriptions whose queries parse, with their keys; one stored query that a newer
    parser refuses is logged and skipped, never the end of everyone's alerts."""
    ok, keys = [], {}
    for s in subs:
        try:
            keys[s.id] = wanted(parse(s.query))
        except QueryError as e:
            log.error("subscription skipped: its query no longer parses",
                      extra={"subscription": s.id, "error": str(e)[:300]})
            continue
        ok.append(s)
    return ok, keys


MAX_INDEX_ATTEMPTS = 5  # refusals of one article before it becomes a dead letter


COMMIT_EVERY = 1.0  # seconds: how long an index that commits apart may hold added pages


async def drain_index(db, store: Store, index: ArticleIndex, batch: int = 500) -> tuple[int, str]:
    """Index the queued articles page by page; returns (indexed, last error).

    A document the backend refuses is counted and, after MAX_INDEX_ATTEMPTS refusals, set
    aside as a dead letter; it never holds up the pages behind it. A backend that takes
    nothing (down, unreachable) ends the drain: everything stays queued for the next one."""
    if getattr(index, "commits_apart", False):
        return await _drain_committing_apart(db, store, index, batch)
    indexed, error, after = 0, "", 0
    while True:
        pending = await db(store.pending, "indexed", batch, after)
        if not pending:
            break
        after = pending[-1].key[0]
        try:
            await index.index([p.article for p in pending])
            done = [p.key for p in pending]
        except IndexError_ as e:
            error = str(e)
            took = set(getattr(e, "indexed", ()))
            refused = getattr(e, "failed", None) or {}
            done = [p.key for p in pending if p.article.id in took]
            await db(store.mark, "indexed", done)
            indexed += len(done)
            if not refused and not took:
                log.error("index unavailable; articles stay queued",
                          extra={"error": error[:500], "queued": len(pending)})
                break
            dead = await db(store.index_refused, [(p.key, refused.get(p.article.id, error)) for p in pending
                                                  if p.article.id not in took], MAX_INDEX_ATTEMPTS)
            log.error("index refused articles; they stay queued", extra={
                "error": error[:500], "refused": len(pending) - len(done), "dead_letters": dead})
            continue
        await db(store.mark, "indexed", done)
        indexed += len(done)
        if len(pending) < batch:
            break
    return indexed, error


async def _drain_committing_apart(db, store: Store, index, batch: int) -> tuple[int, str]:
    """The embedded index: pages are added as they come and committed about once per
    COMMIT_EVERY (and at the end), and marked indexed only once committed. Such an index
    takes a page whole or not at all, so a failure leaves everything since the last commit
    queued."""
    indexed, after = 0, 0
    added: list = []
    since = time.monotonic()
    try:
        while True:
            pending = await db(store.pending, "indexed", batch, after)
            if pending:
                after = pending[-1].key[0]
                await index.add([p.article for p in pending])
                added += [p.key for p in pending]
            last = len(pending) < batch
            if added and (last or time.monotonic() - since >= COMMIT_EVERY):
                await index.commit()
                await db(store.mark, "indexed", added)
                indexed += len(added)
                added, since = [], time.monotonic()
            if last:
                return indexed, ""
    except IndexError_ as e:
        log.error("index unavailable; articles stay queued",
                  extra={"error": str(e)[:500], "queued": len(added)})
        return indexed, str(e)


def jittered(seconds: float, jitter: float) -> float:
    return seconds + random.uniform(0, jitter)


__all__ = ["Pipeline", "FeedReport", "DrainReport", "parse_and_analyze"]
