"""Failure isolation: one feed's failure — bad body, crashed or stuck parser — stays its own."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pickle
import pkgutil
import sys
from datetime import UTC, datetime

import pytest

import alerts
import indexers
import monitor
from monitor.config import FeedConfig, load_config
from monitor.errors import ParseError, RaqibError
from raqib.pipeline import ParseWorkers
from monitor.store import Store
from tests.corpus import rss, rss_item
from tests.e2e_setup import ROOT, write_config


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _sample_args(cls):
    values = {"int": 7, "float": 1.5, "int | None": 7, "float | None": 1.5}
    args = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        ann = str(p.annotation)
        if ann.startswith(("Mapping", "dict")):
            args.append({"k": "v"})
        elif ann.startswith(("Sequence", "tuple", "list", "Iterable")):
            args.append(["a", "b"])
        else:
            args.append(values.get(ann, f"{p.name}-value"))
    return args


def test_every_raqib_error_survives_pickling():
    # Import every module so subclasses defined anywhere in the project are covered.
    for pkg in (monitor, alerts, indexers):
        for mod in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            try:
                importlib.import_module(mod.name)
            except ImportError:  # an optional backend's client is not installed
                pass
    classes = [RaqibError, *_all_subclasses(RaqibError)]
    assert {"ParseError", "FetchError", "RetryLater", "QueryError"} <= {c.__name__ for c in classes}
    for cls in classes:
        e = cls(*_sample_args(cls))
        e.extra = ["kept"]
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is cls
        assert str(back) == str(e) and back.args == e.args
        assert back.__dict__ == e.__dict__, cls


# ---- the parse pool: a dead or stuck worker costs only its own feed ----

def _feed(i: int) -> FeedConfig:
    return FeedConfig(id=f"f{i}", url=f"http://127.0.0.1:9/f{i}.xml", language="ar")


# Words in a feed that needs more than a 128 MB parse worker: 1M sufficed for feedparser, the
# lxml fast path reads that in ~20 MB.
HUNGRY_WORDS = 3_000_000


def _big_feed(words: int) -> bytes:
    return rss([rss_item("قمة الناتو", "https://e.org/big", "كلمة " * words)])


def _workers(tmp_path, n=2, **parse) -> ParseWorkers:
    cfg = load_config(write_config(tmp_path, [], settings={"parse": {"workers": n, **parse}}), None)
    return ParseWorkers.from_config(cfg)


async def _wait_for_processes(pool) -> list:
    for _ in range(2000):
        procs = list((getattr(pool, "_processes", None) or {}).values())
        if procs:
            return procs
        await asyncio.sleep(0.005)
    raise AssertionError("the pool never started a process")


@pytest.mark.parametrize("kill_the_rerun_too", [False, True])
async def test_a_dead_worker_costs_only_the_feed_that_killed_it(tmp_path, kill_the_rerun_too):
    """SIGKILL a worker while four feeds are in flight: each is re-run alone and parses. When
    the re-run's worker dies too, the feed it was running is the culprit — and only that one."""
    workers = _workers(tmp_path)
    body = _big_feed(150_000)
    try:
        tasks = [asyncio.create_task(workers.parse(body, {}, _feed(i), datetime.now(UTC))) for i in range(4)]
        (await _wait_for_processes(workers._pool))[0].kill()
        if kill_the_rerun_too:
            while workers._alone is None:
                await asyncio.sleep(0.005)
            (await _wait_for_processes(workers._alone))[0].kill()  # dies under the first suspect
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
    errors = [r for r in results if isinstance(r, Exception)]
    parsed = [r for r in results if not isinstance(r, Exception) and len(r.articles) == 1]
    assert len(errors) == kill_the_rerun_too and len(parsed) == 4 - kill_the_rerun_too, results
    assert all(isinstance(e, ParseError) and "parser process died" in str(e) for e in errors)
    if not kill_the_rerun_too:
        assert workers._alone is not None  # the survivors really went through the re-run path


async def test_deadline_and_memory_cap_are_the_feeds_own_errors(tmp_path):
    """A parse past its deadline, and one past the worker's memory cap, fail alone."""
    small = rss([rss_item("كورسك", "https://e.org/s", "نص")])
    many_items = rss([rss_item(f"خبر {i}", f"https://e.org/{i}", "نص قصير") for i in range(250_000)])
    for settings, body, error in (({"timeout": 1}, many_items, "took longer than 1 s"),
                                  ({"memory_mb": 128}, _big_feed(HUNGRY_WORDS), "more memory than a parse worker")):
        workers = _workers(tmp_path / str(len(error)), **settings)
        try:
            big = asyncio.create_task(workers.parse(body, {}, _feed(0), datetime.now(UTC)))
            small_ones = [workers.parse(small, {}, _feed(i), datetime.now(UTC)) for i in range(1, 4)]
            results = await asyncio.gather(*small_ones)
            with pytest.raises(ParseError, match=error):
                await big
            assert [len(r.articles) for r in results] == [1, 1, 1]
            # the pool is still usable afterwards
            assert len((await workers.parse(small, {}, _feed(9), datetime.now(UTC))).articles) == 1
        finally:
            workers.shutdown(wait=True, cancel_futures=True)


async def test_a_parse_deaf_to_its_deadline_is_stopped_by_killing_its_worker(tmp_path, monkeypatch):
    """Workers started without their own alarm stand for a parse stuck in C code: the parent's
    deadline kills the pool and the feed fails alone; the pool serves the others afterwards."""
    import raqib.pipeline as pipeline

    class DeafWorkers(ParseWorkers):
        def _new_pool(self, n):
            pool = super()._new_pool(n)
            pool._initargs = (self._rules, self._memory, 0.0)  # no in-worker deadline
            return pool

    # A few seconds of grace so that a fresh pool's start-up (spawned processes importing Raqib,
    # slow on a loaded machine) does not push the small feeds past the hard deadline too; the
    # stuck feed is made far longer than 2 × timeout + grace instead.
    monkeypatch.setattr(pipeline, "HARD_DEADLINE_GRACE", 5.0)
    cfg = load_config(write_config(tmp_path, [], settings={"parse": {"workers": 2, "timeout": 1}}), None)
    workers = DeafWorkers.from_config(cfg)
    small = rss([rss_item("كورسك", "https://e.org/s", "نص")])
    many_items = rss([rss_item(f"خبر {i}", f"https://e.org/{i}", "نص قصير") for i in range(250_000)])
    try:
        stuck = asyncio.create_task(workers.parse(many_items, {}, _feed(0), datetime.now(UTC)))
        others = await asyncio.gather(*(workers.parse(small, {}, _feed(i), datetime.now(UTC)) for i in range(1, 4)))
        with pytest.raises(ParseError, match="parser process was stopped"):
            await stuck
        assert len((await workers.parse(small, {}, _feed(9), datetime.now(UTC))).articles) == 1
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
    assert [len(r.articles) for r in others] == [1, 1, 1]


# ---- `raqib once` and `raqib feeds check` over a mix of good and bad feeds ----

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "1234567890">' + "".join(
    f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8))
    + ']><rss version="2.0"><channel><title>t</title><item><title>&i;</title></item></channel></rss>')
GOOD = {f"good{i}": [rss_item(f"خبر {i}-{j} عن الناتو", f"https://e.org/{i}/{j}", f"نص {i} {j}")
                     for j in range(3)] for i in range(1, 4)}
BAD = {  # id: (route setup, what its error says)
    "html": (lambda s: s.set_feed("/html", b"<!doctype html><html><body><p>hello</p></body></html>",
                                  content_type="text/html; charset=utf-8"), "not a feed"),
    "broken": (lambda s: s.set_feed("/broken", b'<?xml version="1.0"?><foo><bar></foo>'), "not a feed"),
    "empty": (lambda s: s.set_feed("/empty", b""), "not a feed"),
    "server-error": (lambda s: s.set_status("/server-error", 500), "500"),
    "bomb": (lambda s: s.set_feed("/bomb", LAUGHS.encode()), "entity expansion"),
    "tags-bug": (lambda s: s.set_feed("/tags-bug", b'<rss version="2.0"><channel><item><category>a'
                                      b'</item></category><item><title>x</title></item></channel></rss>'),
                 "KeyError"),
}


async def _raqib(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raqib.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def _mixed_config(tmp_path, server, settings=None):
    for fid, items in GOOD.items():
        server.set_feed(f"/{fid}", rss(items))
    for setup, _ in BAD.values():
        setup(server)
    feeds = [(fid, server.url(f"/{fid}")) for fid in [*GOOD, *BAD]]
    return write_config(tmp_path, feeds, settings={"parse": {"workers": 2}, **(settings or {})})


async def test_once_with_bad_feeds_stores_every_good_one_and_names_each_failure(tmp_path, feed_server):
    cfg = _mixed_config(tmp_path, feed_server)
    rc, out, err = await _raqib("once", "--config", str(cfg))
    assert rc == 1, err
    summary = json.loads(out)
    assert summary["ok"] == len(GOOD) and summary["error"] == len(BAD)
    failed = {f["id"]: f["error"] for f in summary["failed"]}
    assert set(failed) == set(BAD)
    for fid, (_, says) in BAD.items():
        assert says in failed[fid], (fid, failed[fid])
    assert "died" not in out and "Traceback" not in err
    store = Store(tmp_path / "data" / "raqib.db")
    try:
        stored = {}
        for batch in store.iter_articles():
            for a in batch:
                stored[a.source] = stored.get(a.source, 0) + 1
        assert stored == {fid: 3 for fid in GOOD}
        for fid in GOOD:
            st = store.feed_state(feed_server.url(f"/{fid}"))
            assert st.error_count == 0 and st.last_error is None
        for fid, (_, says) in BAD.items():
            st = store.feed_state(feed_server.url(f"/{fid}"))
            assert st.error_count == 1 and says in st.last_error and st.next_due is not None
    finally:
        store.close()
    # The next run skips the feeds still backing off: no new failure, exit 0.
    rc, out, err = await _raqib("once", "--config", str(cfg))
    summary = json.loads(out)
    assert rc == 0, out
    assert summary["backing-off"] == len(BAD) and summary["failed"] == []


async def test_once_memory_cap_fails_only_the_hungry_feed(tmp_path, feed_server):
    feed_server.set_feed("/hungry", _big_feed(HUNGRY_WORDS))
    cfg = _mixed_config(tmp_path, feed_server, {"parse": {"workers": 2, "memory_mb": 128},
                                                "fetch": {"max_bytes": 50_000_000, "read_timeout": 20,
                                                          "total_timeout": 60}})
    feeds = (cfg / "feeds.yaml").read_text() + f"- id: hungry\n  url: {feed_server.url('/hungry')}\n"
    (cfg / "feeds.yaml").write_text(feeds)
    rc, out, err = await _raqib("once", "--config", str(cfg))
    failed = {f["id"]: f["error"] for f in json.loads(out)["failed"]}
    assert rc == 1 and set(failed) == {*BAD, "hungry"}, (out, err[-2000:])
    assert "memory" in failed["hungry"]


async def test_once_exit_codes(tmp_path, feed_server):
    feed_server.set_feed("/ok", rss(GOOD["good1"]))
    cfg = write_config(tmp_path, [("ok", feed_server.url("/ok"))], settings={"parse": {"workers": 2}})
    rc, out, err = await _raqib("once", "--config", str(cfg))
    assert rc == 0 and json.loads(out)["failed"] == [], err
    rc, out, err = await _raqib("once", "--config", str(tmp_path / "no-such-dir"))
    assert rc == 2 and "configuration error" in err and "Traceback" not in err
    rc, out, err = await _raqib("once", "--no-such-option")
    assert rc == 2


async def test_feeds_check_prints_every_feed_whatever_breaks(tmp_path, feed_server):
    cfg = _mixed_config(tmp_path, feed_server)
    rc, out, err = await _raqib("feeds", "check", "--json", "--config", str(cfg))
    assert rc == 1 and "Traceback" not in err, err  # some feeds fail: exit 1
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {*GOOD, *BAD}
    for fid in GOOD:
        assert rows[fid]["items"] == 3 and rows[fid]["status"] == "HTTP 200"
    for fid, (_, says) in BAD.items():
        assert rows[fid]["status"].startswith("error:") and says in rows[fid]["status"], rows[fid]
