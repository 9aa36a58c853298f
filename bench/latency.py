"""Alert latency of the running service: fetch → stored → alert sent, measured end to end.

    python bench/latency.py [--feeds 20] [--interval 2] [--duration 60] [--rate 5]

Runs the real service (`raqib run` in a subprocess, the embedded index, parse workers as
configured by default) against a local feed server and a local webhook receiver, both in this
process on loopback. Each feed is polled every --interval seconds (a fixed feed interval).
After every feed's first fetch (the back catalogue, which by design does not alert), new items
are appended to random feeds at --rate items per second for --duration seconds, each with its
publish instant as pubDate. One subscription (`lang:ar`) matches every item.

Per item:
- fetched: when the feed server first served a feed body containing it,
- stored: the store's articles.stored (epoch seconds, written by the service),
- alert sent: when the webhook delivery containing it arrived at the receiver.
Reported: p50/p99/max of fetch→stored, stored→alert and publish→alert (the latter includes
waiting for the next poll, so it is bounded below by the interval), and the peak resident memory
of the service: its main process and main + parse workers (RSS, and PSS, which counts pages
shared between them — libraries, the interpreter — once), sampled every 0.5 s.

--data-dir DIR runs the service on an existing data dir (e.g. the 1M-article one bench/search.py
builds; the run adds its items to it) and, while the service runs, a `raqib search` per query
of --search as a second process (the search side: a reader of the same index), whose peak RSS
is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import yaml
from aiohttp import web
from common import code_revision, emit

from tests.corpus import all_docs, rss, rss_item
from tests.e2e_setup import ROOT, write_config
import tests.receivers
from tests.feedserver import FeedServer
from tests.receivers import WebhookReceiver, running_receiver

SECRET_ENV = "RAQIB_BENCH_HOOK_SECRET"


class Feeds:
    """Growing feeds: each serves its newest `window` items and stamps when an item was first served."""

    def __init__(self, server: FeedServer, n: int, window: int = 20):
        self.server = server
        self.items: list[list[tuple[str, str]]] = [[] for _ in range(n)]  # (guid, rss item xml)
        self.window = window
        self.first_served: dict[str, float] = {}
        self.published: dict[str, float] = {}
        self.run = f"{int(time.time() * 1000):x}"
        for i in range(n):
            server.set_handler(f"/f{i}.xml", self._handler(i))

    def _handler(self, i: int):
        async def handle(request: web.Request) -> web.Response:
            items = self.items[i][-self.window:]
            now = time.time()
            for guid, _ in items:
                self.first_served.setdefault(guid, now)
            etag = f'"{i}-{len(self.items[i])}"'
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            body = rss([x for _, x in reversed(items)], title=f"feed {i}")
            return web.Response(body=body, headers={"ETag": etag, "Content-Type": "application/rss+xml"})
        return handle

    def publish(self, i: int, doc, n: int) -> str:
        guid = f"https://bench.invalid/item/{self.run}/{n}"  # new ids on every run (--data-dir is reused)
        now = time.time()
        pub = format_datetime(datetime.fromtimestamp(now, UTC))
        self.items[i].append((guid, rss_item(doc.title, guid, doc.abstract, pub, guid=guid, content=doc.text)))
        self.published[guid] = now
        return guid


class StampedReceiver(WebhookReceiver):
    """The test webhook receiver, noting when each item's delivery arrived (by its link)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        resp = await super().handle(request)
        t = time.time()
        if resp.status < 300:
            for it in self.deliveries[-1]["json"].get("items", []):
                self.arrivals.setdefault(it.get("link", ""), t)
        return resp


def extra_subscriptions(docs, published, n: int) -> list[dict]:
    """`n` more subscriptions (to the log channel), as many a desk keeps: words, word pairs and
    title phrases of other articles, made of words no published item contains (none of their
    keys), so they cost loading and matching but never alert: the alert volume stays that of
    the one subscription measured."""
    from monitor.arabic import forms, query_key, tokens

    seen = {k for d in published for t in tokens(d.title) + tokens(d.text) for k in forms(t)}
    words, phrases = [], []
    for d in docs:
        ts = [t for t in tokens(d.title) if len(t) >= 4 and not t.isdigit() and query_key(t) not in seen
              and not seen.intersection(forms(t))]
        words += ts
        phrases += [f'"{a} {b}"' for a, b in zip(ts, ts[1:], strict=False)]
    words = list(dict.fromkeys(words))
    rnd = random.Random(7)
    shapes = [lambda: rnd.choice(words), lambda: f"{rnd.choice(words)} {rnd.choice(words)}",
              lambda: rnd.choice(phrases) if phrases else rnd.choice(words),
              lambda: f"({rnd.choice(words)} OR {rnd.choice(words)}) topic:nato"]
    return [{"id": f"s{i}", "query": rnd.choice(shapes)(), "channels": ["log"]} for i in range(n)] if words else []


def _mem_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, (0, 0) when it is gone. The parse workers are
    spawned, not forked, so they share little with the service beyond mapped libraries; PSS
    splits those shared pages among the processes, a sum of RSS counts them in each."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out += [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


class RssPeak:
    """Peak RSS of a process alone and with its children (the parse workers), sampled."""

    def __init__(self, pid: int):
        self.pid, self.main_kb, self.total_kb, self.total_pss_kb, self.samples = pid, 0, 0, 0, 0

    async def run(self) -> None:
        while True:
            main, main_pss = _mem_kb(self.pid)
            if not main:
                return
            kids = [_mem_kb(c) for c in _children(self.pid)]
            self.main_kb = max(self.main_kb, main)
            self.total_kb = max(self.total_kb, main + sum(r for r, _ in kids))
            self.total_pss_kb = max(self.total_pss_kb, main_pss + sum(p for _, p in kids))
            self.samples += 1
            await asyncio.sleep(0.5)

    def result(self) -> dict:
        return {"main_process_mb": round(self.main_kb / 1024), "with_parse_workers_mb":
                round(self.total_kb / 1024), "with_parse_workers_pss_mb": round(self.total_pss_kb / 1024),
                "samples": self.samples, "every_s": 0.5}


async def search_side(cfg: Path, data_dir: Path, queries: list[str]) -> dict:
    """Each query as its own `raqib search` process (a reader of the service's index): its
    peak RSS (ru_maxrss from wait4) and wall time."""
    out = []
    for q in queries:
        t = time.monotonic()
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "raqib.cli", "search", "--config",
                                              str(cfg), "--data-dir", str(data_dir), "--json", q],
                             {**os.environ, "PYTHONPATH": str(ROOT)},
                             file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
        _, status, ru = await asyncio.to_thread(os.wait4, pid, 0)
        out.append({"query": q, "exit": os.waitstatus_to_exitcode(status),
                    "peak_rss_mb": round(ru.ru_maxrss / 1024), "wall_s": round(time.monotonic() - t, 2)})
    return {"processes": out, "max_peak_rss_mb": max((x["peak_rss_mb"] for x in out), default=None)}


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 4)


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": pct(xs, 0.50), "p99": pct(xs, 0.99), "max": round(max(xs), 4) if xs else None}


async def run(args) -> dict:
    published = args.feeds * 5 + int(args.rate * args.duration) + 50
    docs = [d for d in all_docs(published + (3000 if args.subscriptions > 1 else 0)) if d.title and d.text]
    rnd = random.Random(args.seed)
    server = await FeedServer().start()
    feeds = Feeds(server, args.feeds)
    n = 0
    for i in range(args.feeds):  # the back catalogue: stored on the first fetch, never alerted
        for _ in range(5):
            feeds.publish(i, docs[n], n)
            n += 1
    backcatalogue = set(feeds.published)
    tmp = Path(tempfile.mkdtemp(prefix="raqib-latency-"))
    tests.receivers.WebhookReceiver = StampedReceiver  # running_receiver() builds this class
    async with running_receiver() as rec:
        arrivals = rec.arrivals
        cfg = write_config(
            tmp, [(f"f{i}", server.url(f"/f{i}.xml")) for i in range(args.feeds)],
            channels={"hook": {"type": "webhook", "url": rec.url, "secret_env": SECRET_ENV},
                      "log": {"type": "log"}},
            subscriptions=[{"id": "all", "query": "lang:ar", "channels": ["hook"]},
                           *extra_subscriptions(docs[published:], docs[:published], args.subscriptions - 1)],
            settings={"parse": {"workers": args.workers},
                      "schedule": {"default_interval": args.interval, "min_interval": args.interval,
                                   "max_interval": max(args.interval, 60), "jitter": 0},
                      "alerts": {"deliver_interval": 10}})  # the default: deliveries are woken, not polled
        feeds_yaml = yaml.safe_load((cfg / "feeds.yaml").read_text(encoding="utf-8"))
        for f in feeds_yaml["feeds"]:
            f["interval"] = args.interval
        (cfg / "feeds.yaml").write_text(yaml.safe_dump(feeds_yaml, allow_unicode=True), encoding="utf-8")
        log = open(tmp / "service.log", "ab")  # noqa: SIM115 - handed to the child
        data_dir = Path(args.data_dir) if args.data_dir else tmp / "data"
        extra = ["--data-dir", str(data_dir)] if args.data_dir else []
        t_start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg), *extra, cwd=ROOT, stdout=log,
            stderr=log, env={**os.environ, SECRET_ENV: "bench-secret"})
        log.close()
        rss = RssPeak(proc.pid)
        rss_task = asyncio.create_task(rss.run())
        searched = None
        load_start = os.getloadavg()[0]
        try:
            deadline = time.monotonic() + 300  # 100k subscriptions take a while to load
            while not all(g in feeds.first_served for g in backcatalogue):
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise SystemExit("raqib: the service did not fetch every feed within 300 s; see "
                                     f"{tmp / 'service.log'}")
                await asyncio.sleep(0.1)
            started_s = time.monotonic() - t_start
            await asyncio.sleep(args.interval + 1)  # first fetches stored (as back catalogue)
            fresh = []
            t_end = time.monotonic() + args.duration
            if args.data_dir and args.search:
                searching = asyncio.create_task(search_side(cfg, data_dir, args.search))
            while time.monotonic() < t_end:
                fresh.append(feeds.publish(rnd.randrange(args.feeds), docs[n % min(published, len(docs))], n))
                n += 1
                await asyncio.sleep(rnd.expovariate(args.rate))
            deadline = time.monotonic() + args.interval + 30
            while time.monotonic() < deadline and not all(g in arrivals for g in fresh):
                await asyncio.sleep(0.2)
            if args.data_dir and args.search:
                searched = await searching
        finally:
            load_end = os.getloadavg()[0]
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await server.stop()
            rss_task.cancel()
    conn = sqlite3.connect(f"file:{data_dir / 'raqib.db'}?mode=ro", uri=True)
    stored = dict(conn.execute("SELECT link, stored FROM articles WHERE link LIKE 'https://bench.invalid/%'")
                  .fetchall())
    articles_in_store = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
    conn.close()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    fs, sa, pa = [], [], []
    for g in fresh:
        if g in stored and g in feeds.first_served:
            fs.append(stored[g] - feeds.first_served[g])
        if g in stored and g in arrivals:
            sa.append(arrivals[g] - stored[g])
            pa.append(arrivals[g] - feeds.published[g])
    return {"benchmark": "alert-latency", **code_revision(),
            "settings": {"feeds": args.feeds, "interval_s": args.interval, "duration_s": args.duration,
                         "rate_items_per_s": args.rate, "parse_workers": args.workers, "index": "embedded (tantivy)",
                         "subscriptions": args.subscriptions, "matching_every_item": "lang:ar"},
            "items": {"published": len(fresh), "stored": sum(g in stored for g in fresh),
                      "alerted": sum(g in arrivals for g in fresh),
                      "back_catalogue_alerted": sum(g in arrivals for g in backcatalogue)},
            "fetch_to_stored_s": summary(fs), "stored_to_alert_s": summary(sa), "publish_to_alert_s": summary(pa),
            "load": {"start": round(load_start, 2), "end": round(load_end, 2)},
            "articles_in_store_at_end": articles_in_store, "data_dir_given": args.data_dir,
            "service_started_and_first_fetches_s": round(started_s, 1),
            "peak_rss": {"service": rss.result(), "search_side": searched,
                         "this_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)},
            "target": "stored_to_alert p99 < 1 s", "data_dir": str(tmp) if args.keep else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=20)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between polls of each feed")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    ap.add_argument("--rate", type=float, default=5.0, help="new items per second, over all feeds")
    ap.add_argument("--workers", type=int, default=2, help="parse workers (the default config's 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--subscriptions", type=int, default=1,
                    help="subscriptions loaded (one matches every item; the others go to the log channel)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir and service log")
    ap.add_argument("--data-dir", help="run the service on this existing data dir (it is written to)")
    ap.add_argument("--search", action="append", default=[],
                    help="with --data-dir: a query run by `raqib search` while the service runs (repeatable)")
    emit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
