"""(c) One poll cycle over N feeds served locally, end to end in Raqib, next to `reader`.

    python bench/poll.py [--feeds 1000] [--items 50] [--reader-workers 1,16] [--no-reader]
                         [--no-reader-search] [--profile FILE] [--profile-304 FILE] [--keep]

Needs the `bench` extra (reader) and sgmllib3k (reader's vendored feedparser imports sgmllib).

Feeds: real ANT articles (tests.corpus.all_docs, deduplicated by docno and URL), wrapped as
RSS 2.0 with full text (tests.corpus.rss / ant_item), --items per feed. When the corpus has
fewer unique articles than feeds x items, articles are reused with a per-feed suffix on guid
and link, so every served item is distinct (for Raqib's id- and link-based dedup alike).

The feed server is an aiohttp app in a separate process (its CPU is not counted against either
client), uncompressed bodies, with ETag and Last-Modified; If-None-Match (or If-Modified-Since)
that matches gets 304. It counts the statuses it sent, so each pass is checked: the second pass
of each client must be all 304s.

Raqib is driven through its real code path: a temporary config dir (raqib.yaml from the shipped
defaults with parse.workers 2, fetch.per_host_limit 50, fetch.total_limit 100; the shipped
topics.yaml and alerts.yaml — the default `tracked-topics` subscription to the log channel;
feeds.yaml with the local feeds), `monitor.config.load_config`, and
`raqib.service.run_once(config)` twice: (1) all-new content — fetch, parse, tag, store,
index into the embedded tantivy index, match, outbox, deliver; (2) all-304.
Logging is set up as `raqib once` does (INFO), written to a file in the temporary directory.

reader (lemon24/reader) updates the same served feeds in the same run: `make_reader(db)`,
`add_feed` per URL, `update_feeds(workers=N)` (new), then `update_feeds(workers=N,
scheduled=False)` (all-304: the second update comes before the feeds are due again),
once per --reader-workers value, each on its own database; the ratio uses reader's best.
reader does not tag, index or match during an update; its full-text index is built by a
separate `update_search()` call, timed separately and reported as an extra ratio.

CPU seconds are getrusage(RUSAGE_SELF) + getrusage(RUSAGE_CHILDREN) deltas: Raqib's parse
workers are child processes joined at the end of run_once, so their CPU is included.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Keep module-level imports light: Raqib's spawned parse workers re-import this main module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent
LAST_MODIFIED = "Mon, 02 Dec 2024 10:00:00 GMT"
RAQIB_FETCH = {"per_host_limit": 50, "total_limit": 100, "allow_networks": ["127.0.0.0/8"]}
RAQIB_PARSE_WORKERS = 2


# ---------------------------------------------------------------- feeds and the server process


def unique_docs() -> list:
    """ANT articles with distinct docno and URL (the archive has 31.5k, 30.3k distinct URLs)."""
    from tests.corpus import all_docs

    seen_ids, seen_urls, out = set(), set(), []
    for d in all_docs():
        if d.docno in seen_ids or d.url in seen_urls:
            continue
        seen_ids.add(d.docno)
        seen_urls.add(d.url)
        out.append(d)
    return out


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_clean(d):
    """Drop characters XML 1.0 forbids (two ANT articles carry a U+0002), so every served feed is
    well-formed: reader rejects a feed that is not, Raqib keeps it — unequal work otherwise."""
    from dataclasses import replace

    return replace(d, title=_XML_INVALID.sub("", d.title), abstract=_XML_INVALID.sub("", d.abstract),
                   text=_XML_INVALID.sub("", d.text))


def build_feeds(n_feeds: int, n_items: int) -> tuple[list[bytes], dict]:
    """n_feeds RSS bodies of n_items real articles each; all items distinct."""
    from dataclasses import replace

    from tests.corpus import ant_item, rss

    docs = [_xml_clean(d) for d in unique_docs()]
    bodies, reused = [], 0
    for f in range(n_feeds):
        items = []
        for i in range(n_items):
            j = f * n_items + i
            d = docs[j % len(docs)]
            if j >= len(docs):  # second use of this article: make it a distinct item
                reused += 1
                sep = "&" if "?" in d.url else "?"
                d = replace(d, docno=f"{d.docno}-feed{f}", url=f"{d.url}{sep}copy=feed{f}")
            items.append(ant_item(d))
        bodies.append(rss(items, title=f"Bench feed {f}"))
    sizes = [len(b) for b in bodies]
    facts = {"unique_corpus_articles": len(docs), "items": n_feeds * n_items,
             "items_reused_with_per_feed_suffix": reused,
             "feed_bytes_mean": sum(sizes) // len(sizes), "feed_bytes_total": sum(sizes)}
    return bodies, facts


def _not_modified(headers, etag: str) -> bool:
    inm = headers.get("If-None-Match")
    if inm is not None:
        return "*" in inm or etag in {t.strip().removeprefix("W/") for t in inm.split(",")}
    return headers.get("If-Modified-Since") == LAST_MODIFIED


def serve(n_feeds: int, n_items: int, conn) -> None:
    """Server process: build the feeds, report (port, facts) on `conn`, serve until killed."""
    from aiohttp import web

    bodies, facts = build_feeds(n_feeds, n_items)
    etags = ['"' + hashlib.blake2b(b, digest_size=8).hexdigest() + '"' for b in bodies]
    stats = {"200": 0, "304": 0, "404": 0, "bytes": 0}

    async def feed(request: web.Request) -> web.Response:
        try:
            n = int(request.match_info["n"])
            body, etag = bodies[n], etags[n]
        except (ValueError, IndexError):
            stats["404"] += 1
            return web.Response(status=404)
        h = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if _not_modified(request.headers, etag):
            stats["304"] += 1
            return web.Response(status=304, headers=h)
        stats["200"] += 1
        stats["bytes"] += len(body)
        return web.Response(body=body, headers={**h, "Content-Type": "application/rss+xml; charset=utf-8"})

    async def get_stats(request: web.Request) -> web.Response:
        out = dict(stats)
        if request.query.get("reset"):
            stats.update({k: 0 for k in stats})
        return web.json_response(out)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{n}.xml", feed)
        app.router.add_get("/_stats", get_stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        conn.send((port, facts))
        await asyncio.Event().wait()

    asyncio.run(main())


class FeedServerProcess:
    def __init__(self, n_feeds: int, n_items: int):
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(n_feeds, n_items, child), daemon=True,
                                name="bench-feed-server")
        self.proc.start()
        if not parent.poll(600):
            self.stop()
            raise RuntimeError("feed server did not start")
        self.port, self.facts = parent.recv()
        self.base = f"http://127.0.0.1:{self.port}"

    def urls(self, n: int) -> list[str]:
        return [f"{self.base}/feed/{i}.xml" for i in range(n)]

    def stats(self, reset: bool = True) -> dict:
        with urllib.request.urlopen(f"{self.base}/_stats{'?reset=1' if reset else ''}") as r:
            return json.load(r)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# ---------------------------------------------------------------- measuring


def cpu_now() -> tuple[float, float]:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


class Measure:
    def __enter__(self):
        self.wall0 = time.perf_counter()
        self.self0, self.child0 = cpu_now()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        s, c = cpu_now()
        self.cpu_self, self.cpu_children = s - self.self0, c - self.child0

    def figures(self, feeds: int) -> dict:
        return {"wall_s": round(self.wall, 3), "feeds_per_s": round(feeds / self.wall, 1),
                "cpu_s": round(self.cpu_self + self.cpu_children, 3),
                "cpu_self_s": round(self.cpu_self, 3), "cpu_children_s": round(self.cpu_children, 3)}


# ---------------------------------------------------------------- Raqib


def write_raqib_config(tmp: Path, urls: list[str]) -> Path:
    import yaml

    d = tmp / "config"
    d.mkdir(parents=True)
    settings = yaml.safe_load((ROOT / "config" / "raqib.yaml").read_text(encoding="utf-8"))
    settings["data_dir"] = str(tmp / "data")
    settings["fetch"].update(RAQIB_FETCH)
    settings["parse"]["workers"] = RAQIB_PARSE_WORKERS
    (d / "raqib.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    shutil.copy(ROOT / "config" / "topics.yaml", d / "topics.yaml")
    shutil.copy(ROOT / "config" / "alerts.yaml", d / "alerts.yaml")
    feeds = [{"id": f"bench-{i}", "url": u, "name": f"Bench feed {i}", "language": "ar"}
             for i, u in enumerate(urls)]
    (d / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), encoding="utf-8")
    return d


def raqib_pass(cdir: Path, tmp: Path, n: int, profile: str | None = None) -> dict:
    from collections import Counter

    from monitor import analysis
    from monitor.config import load_config
    from raqib.service import run_once

    from raqib.pipeline import Pipeline

    before = dict(analysis.stats)
    marks: dict[str, float] = {}
    drain, close = Pipeline.drain, Pipeline.close

    async def timed_drain(self, *a, **k):  # when the last index/match work finished
        r = await drain(self, *a, **k)
        if r.indexed or r.matched:
            marks["last_drain_with_work"] = time.perf_counter()
        return r

    async def timed_close(self):
        marks["close_start"] = time.perf_counter()
        await close(self)
        marks["close_end"] = time.perf_counter()

    Pipeline.drain, Pipeline.close = timed_drain, timed_close
    t0 = time.perf_counter()
    config = load_config(cdir, data_dir=tmp / "data", env={})
    t_config = time.perf_counter() - t0
    last_feed = [0.0]

    def on_feed(_report) -> None:
        last_feed[0] = time.perf_counter()

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    with Measure() as m:
        if prof:
            prof.enable()
        try:
            reports, drained, delivered = asyncio.run(run_once(config, on_feed=on_feed))
        finally:
            Pipeline.drain, Pipeline.close = drain, close
        if prof:
            prof.disable()
    if prof:
        prof.dump_stats(profile)
    status = Counter(r.status for r in reports)
    out = m.figures(n)
    out.update({
        "load_config_s_not_counted": round(t_config, 3),
        "until_last_feed_polled_s": round(last_feed[0] - m.wall0, 3),
        "after_polls_drain_deliver_close_s": round(m.wall0 + m.wall - last_feed[0], 3),
        "tail_breakdown_s": {
            "indexing_and_matching_after_last_poll": round(max(0.0, marks.get("last_drain_with_work", 0)
                                                               - last_feed[0]), 3),
            "pipeline_close": round(marks.get("close_end", 0) - marks.get("close_start", 0), 3)},
        "statuses": dict(status), "items": sum(r.items for r in reports),
        "new": sum(r.new for r in reports), "updated": sum(r.updated for r in reports),
        "unchanged": sum(r.unchanged for r in reports),
        "indexed": drained.indexed, "matched": drained.matched, "alerts_enqueued": drained.alerts,
        "alert_messages_delivered": delivered.messages,
        "errors": sorted({r.error for r in reports if r.error})[:5],
        # where the matcher got each article's tokens: shipped by the parse worker (directly or
        # through the store hand-off) or analyzed again in the main process
        "analysis_sources": {k: v - before[k] for k, v in analysis.stats.items()},
    })
    return out


def raqib_index_count(tmp: Path) -> int:
    """Documents in the embedded (tantivy) index after the pass."""
    from indexers.tantivy_index import TantivyIndex

    index = TantivyIndex(tmp / "data" / "raqib.db")
    try:
        return index.count_sync()
    finally:
        index.close_sync()


# ---------------------------------------------------------------- reader


def reader_passes(urls: list[str], tmp: Path, workers: int, search: bool,
                  server: FeedServerProcess) -> dict:
    import logging

    import reader

    logging.getLogger("reader").setLevel(logging.ERROR)
    tmp.mkdir(parents=True, exist_ok=True)
    r = reader.make_reader(str(tmp / "reader.sqlite"))
    out: dict = {"version": reader.__version__, "workers": workers,
                 "calls": "make_reader(db); add_feed(url) x N; update_feeds(workers=W); "
                          "update_feeds(workers=W, scheduled=False)"}
    with Measure() as m:
        for u in urls:
            r.add_feed(u)
    out["add_feeds_s"] = round(m.wall, 3)
    with Measure() as m:
        r.update_feeds(workers=workers)
    out["new"] = m.figures(len(urls))
    out["new"]["server"] = server.stats()
    out["new"]["entries_stored"] = r.get_entry_counts().total
    out["new"]["feeds_with_errors"] = sum(1 for f in r.get_feeds() if f.last_exception)
    with Measure() as m:
        r.update_feeds(workers=workers, scheduled=False)
    out["not_modified"] = m.figures(len(urls))
    out["not_modified"]["server"] = server.stats()
    out["not_modified"]["entries_stored"] = r.get_entry_counts().total
    if search:
        with Measure() as m:
            r.enable_search()
            r.update_search()
        out["update_search"] = {"wall_s": round(m.wall, 3), "cpu_s": round(m.cpu_self + m.cpu_children, 3),
                                "note": "reader's full-text index, built separately from update_feeds"}
    r.close()
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--reader-workers", default="1,16",
                    type=lambda v: [int(x) for x in v.split(",")],
                    help="comma-separated thread counts for reader.update_feeds(workers=N), "
                         "each run on its own reader database (default 1,16)")
    ap.add_argument("--no-reader", action="store_true")
    ap.add_argument("--no-reader-search", action="store_true",
                    help="skip timing reader.update_search() after its update")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the Raqib all-new pass (main process) to FILE")
    ap.add_argument("--profile-304", metavar="FILE", help="cProfile the Raqib all-304 pass to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from common import code_revision, emit

    from monitor.logs import setup_logging

    tmp = Path(tempfile.mkdtemp(prefix="raqib-bench-poll-"))
    log_file = open(tmp / "raqib.log", "w", encoding="utf-8")  # noqa: SIM115
    setup_logging("INFO", stream=log_file)
    server = FeedServerProcess(args.feeds, args.items)
    result: dict = {"benchmark": "poll-cycle", "feeds": args.feeds, "items_per_feed": args.items,
                    "code": code_revision(),
                    "load_average_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        urls = server.urls(args.feeds)
        result.update(server.facts)
        result["server"] = ("aiohttp in a separate process (CPU not counted), 127.0.0.1, "
                            "uncompressed, ETag + Last-Modified, 304 on a matching If-None-Match")
        result["raqib_settings"] = {
            "parse.workers": RAQIB_PARSE_WORKERS, **{f"fetch.{k}": v for k, v in RAQIB_FETCH.items()},
            "note": "all feeds are on ONE host (127.0.0.1) here, so fetch.per_host_limit is raised "
                    "from the default 2 to 50 (total_limit 100); real feeds are spread over many hosts",
            "subscriptions": "shipped alerts.yaml: tracked-topics (topic:nato OR topic:kursk OR "
                             "topic:budapest_memorandum) -> log channel",
            "logging": "INFO to a file"}
        cdir = write_raqib_config(tmp, urls)
        server.stats(reset=True)
        raqib = {"new": raqib_pass(cdir, tmp, args.feeds, args.profile)}
        raqib["new"]["server"] = server.stats()
        raqib["new"]["index_rows"] = raqib_index_count(tmp)
        raqib["not_modified"] = raqib_pass(cdir, tmp, args.feeds, args.profile_304)
        raqib["not_modified"]["server"] = server.stats()
        result["raqib"] = raqib
        print(f"raqib: new {raqib['new']['wall_s']}s, 304 {raqib['not_modified']['wall_s']}s",
              file=sys.stderr)
        if not args.no_reader:
            runs = []
            for w in args.reader_workers:
                server.stats(reset=True)
                runs.append(reader_passes(urls, tmp / f"reader-{w}", w,
                                          search=not args.no_reader_search and w == args.reader_workers[0],
                                          server=server))
                print(f"reader workers={w}: new {runs[-1]['new']['wall_s']}s, "
                      f"304 {runs[-1]['not_modified']['wall_s']}s", file=sys.stderr)
            result["reader"] = runs
            best_new = min(runs, key=lambda r: r["new"]["wall_s"])
            best_304 = min(runs, key=lambda r: r["not_modified"]["wall_s"])
            ratios = {
                "new": round(best_new["new"]["wall_s"] / raqib["new"]["wall_s"], 2),
                "new_reader_workers": best_new["workers"],
                "not_modified": round(best_304["not_modified"]["wall_s"] / raqib["not_modified"]["wall_s"], 2),
                "not_modified_reader_workers": best_304["workers"],
                "new_cpu": round(best_new["new"]["cpu_s"] / raqib["new"]["cpu_s"], 2),
                "not_modified_cpu": round(best_304["not_modified"]["cpu_s"] / raqib["not_modified"]["cpu_s"], 2),
                "note": "reader's fastest worker setting for each pass",
            }
            searched = [r for r in runs if "update_search" in r]
            if searched:
                r0 = searched[0]
                ratios["new_reader_incl_update_search"] = round(
                    (r0["new"]["wall_s"] + r0["update_search"]["wall_s"]) / raqib["new"]["wall_s"], 2)
            result["ratio_reader_over_raqib"] = ratios
            result["target"] = {"reader_over_raqib_at_least": 3.0,
                                "new_met": ratios["new"] >= 3.0,
                                "not_modified_met": ratios["not_modified"] >= 3.0}
        result["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        server.stop()
        log_file.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
