"""The command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.corpus import seed_text
from tests.e2e_setup import ROOT


def raqib(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raqib.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def test_tag_jsonl():
    seed = seed_text()
    lines = [
        json.dumps({"id": "seed", "title": "الناتو وأوكرانيا", "text": seed}, ensure_ascii=False),
        json.dumps({"id": "ocean", "text": "عبرت السفينة المحيط الأطلسي"}, ensure_ascii=False),
        json.dumps({"id": 3, "text": "اجتماع للناتو وهجوم بكورسك"}, ensure_ascii=False),
    ]
    r = raqib("tag", "--jsonl", "-", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["id"] for o in out] == ["seed", "ocean", 3]
    assert set(out[0]["topics"]) == {"nato", "kursk", "budapest_memorandum"}
    text0 = "الناتو وأوكرانيا\n" + seed
    for m in out[0]["matches"]:
        assert set(m) == {"topic", "start", "end", "text"}
        assert text0[m["start"]:m["end"]] == m["text"]
    assert out[1] == {"id": "ocean", "topics": [], "matches": []}
    assert out[2]["topics"] == ["nato", "kursk"]
    assert [m["text"] for m in out[2]["matches"]] == ["للناتو", "بكورسك"]


def test_tag_jsonl_bad_line_is_reported_and_the_rest_processed():
    r = raqib("tag", "--jsonl",
              stdin='{"id": 1, "text": "الناتو"}\nnot json\n{"text": "x"}\n{"id": 2, "text": "كورسك"}\n')
    assert r.returncode == 2
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == [1, 2]
    assert "line 2" in r.stderr and "line 3" in r.stderr


def test_tag_plain_text():
    r = raqib("tag", stdin="قمة حلف شمال الأطلنطي")
    assert r.returncode == 0
    assert json.loads(r.stdout)["topics"] == ["nato"]


def test_every_command_has_help():
    for cmd in (["run"], ["once"], ["search"], ["tag"], ["trends"], ["subscriptions", "add"],
                ["subscriptions", "list"], ["subscriptions", "remove"], ["feeds", "check"]):
        r = raqib(*cmd, "--help")
        assert r.returncode == 0 and "--config" in r.stdout and "--data-dir" in r.stdout, cmd


def test_bad_query_is_a_clear_error(tmp_path):
    r = raqib("search", "(الناتو", "--data-dir", str(tmp_path))
    assert r.returncode == 2
    assert "missing ')'" in r.stderr and "Traceback" not in r.stderr


def test_feeds_check_table(tmp_path):
    """`raqib feeds check` against a real local server started in a subprocess-free way."""
    import asyncio

    from aiohttp import web

    from tests.corpus import rss, rss_item
    from tests.e2e_setup import write_config
    from tests.receivers import free_port

    port = free_port()
    body = rss([rss_item("قمة الناتو", "https://e.org/1", "نص")], encoding="windows-1256")

    async def main():
        app = web.Application()
        app.router.add_get("/ok.xml", lambda r: web.Response(body=body, content_type="application/rss+xml"))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        cfg = write_config(tmp_path, [("ok", f"http://127.0.0.1:{port}/ok.xml"),
                                      ("gone", f"http://127.0.0.1:{port}/gone.xml")])
        runs = []
        for extra in (["--json"], []):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "raqib.cli", "feeds", "check", *extra, "--config", str(cfg),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            runs.append((proc.returncode, out.decode(), err.decode()))
        await runner.cleanup()
        return runs

    (rc, out, err), (table_rc, table, _) = asyncio.run(main())
    assert rc == table_rc == 1, err  # a feed failed
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows["ok"]) == {"id", "url", "status", "items", "encoding", "seconds"}
    assert rows["ok"]["items"] == 1 and rows["ok"]["encoding"] == "windows-1256"
    assert rows["gone"]["status"].startswith("error: HTTP 404")
    # piped: a header and one tab-separated line per feed, nothing cut to a terminal's width
    lines = [line.split("\t") for line in table.splitlines()]
    assert lines[0] == ["feed", "status", "items", "encoding", "time (s)"]
    assert [r[:4] for r in lines[1:]] == [["ok", "HTTP 200", "1", "windows-1256"],
                                          ["gone", rows["gone"]["status"], "0", "-"]]


def test_json_logs():
    import io
    import logging

    from monitor.logs import setup_logging

    buf = io.StringIO()
    setup_logging("INFO", json_format=True, stream=buf)
    logging.getLogger("raqib.test").info("feed polled", extra={"feed": "bbc-arabic", "new": 3})
    rec = json.loads(buf.getvalue())
    assert rec["message"] == "feed polled" and rec["feed"] == "bbc-arabic" and rec["new"] == 3
    assert rec["level"] == "info" and rec["time"].endswith("+00:00")
    logging.getLogger().handlers.clear()


def test_index_status_and_reindex(tmp_path):
    from tests.e2e_setup import write_config
    from tests.helpers import make_article
    from monitor.store import Store

    cfg = write_config(tmp_path, [("a", "http://127.0.0.1:9/a.xml")])
    store = Store(tmp_path / "data" / "raqib.db")
    store.ingest([make_article("قمة الناتو", "نص"), make_article("كورسك", "نص آخر")], [], {}, None)
    store.close()
    st = json.loads(raqib("index", "status", "--json", "--config", str(cfg)).stdout)
    assert st["stored_articles"] == 2 and st["indexed_documents"] == 0 and st["waiting_to_index"] == 2
    r = raqib("index", "reindex", "--config", str(cfg))
    assert r.returncode == 0 and "reindexed 2" in r.stdout
    r = raqib("search", "للناتو", "--json", "--config", str(cfg))
    assert json.loads(r.stdout)["total"] == 1


def _stored(tmp_path, n: int = 30):
    from monitor.store import Store
    from tests.helpers import make_article

    store = Store(tmp_path / "raqib.db")
    store.ingest([make_article(f"الناتو {i}", "كورسك" if i % 2 else "قمة", link=f"https://x.org/{i}")
                  for i in range(n)], [], {}, None)
    store.close()
    r = raqib("index", "reindex", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr


def test_a_query_may_start_with_a_dash(tmp_path):
    _stored(tmp_path)
    r = raqib("search", "-كورسك", "--data-dir", str(tmp_path), "--json", "--limit", "100")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"] == 15


def test_unknown_topics_sources_and_fields_are_named_errors(tmp_path):
    _stored(tmp_path, 2)
    for query, says in [("topic:natoo", "unknown topic 'natoo' (topics: budapest_memorandum, kursk, nato"),
                        ("source:nosuchfeed", "unknown source 'nosuchfeed'"), ("foo:bar", "foo")]:
        r = raqib("search", query, "--data-dir", str(tmp_path))
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (query, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    # a source that only the store still knows (a feed removed from feeds.yaml) is searchable
    assert raqib("search", "source:test", "--data-dir", str(tmp_path)).returncode == 0
    r = raqib("subscriptions", "add", "x", "topic:natoo", "--channel", "log", "--yes", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "unknown topic" in r.stderr


def test_limits_and_numbers_are_checked_in_one_line(tmp_path):
    for args in (["--limit", "0"], ["--limit", "-5"], ["--limit", "1" * 20], ["--cursor", "9" * 30]):
        r = raqib("search", "الناتو", "--data-dir", str(tmp_path), *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_output_into_a_closed_pipe_is_quiet(tmp_path):
    _stored(tmp_path, 1000)  # ~150 KB of output: more than a pipe holds
    p = subprocess.run(f"{sys.executable} -m raqib.cli search الناتو --limit 1000 --data-dir {tmp_path} | head -1",
                       shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.stdout.strip() == "1000 articles"
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_global_options_go_before_or_after_the_command(tmp_path):
    _stored(tmp_path, 3)
    r = raqib("search", "-v", "--data-dir", str(tmp_path), "--json")  # "-v" is a query: without v
    assert r.returncode == 0 and json.loads(r.stdout)["total"] == 3, r.stderr
    r = raqib("index", "--json", "status", "--data-dir", str(tmp_path))
    assert r.returncode == 0 and json.loads(r.stdout)["indexed_documents"] == 3, r.stderr
    before = raqib("--data-dir", str(tmp_path), "--json", "search", "الناتو")
    after = raqib("search", "الناتو", "--data-dir", str(tmp_path), "--json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)["total"] == json.loads(after.stdout)["total"] == 3
    v = raqib("--version")
    assert v.returncode == 0 and v.stdout.startswith("raqib ")
    h = raqib("--help")
    assert "exit status: 0 done; 1 some work failed" in " ".join(h.stdout.split())


def test_subscription_prompts_respect_the_user(tmp_path):
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [], channels={"log": {"type": "log"}},
                       subscriptions=[{"id": "managed", "query": "كورسك", "channels": ["log"]}])
    add = ("subscriptions", "add", "s1", "الناتو", "--channel", "log", "--config", str(cfg))
    r = raqib(*add, stdin="y\n")  # stdin is a pipe: no consent without --yes
    assert r.returncode == 2 and "--yes" in r.stderr
    assert raqib(*add, "--yes").returncode == 0
    r = raqib(*add[:3], "قمة", *add[4:], "--yes")
    assert r.returncode == 2 and "exists" in r.stderr and "--replace" in r.stderr
    assert raqib(*add[:3], "قمة", *add[4:], "--yes", "--replace").returncode == 0
    listed = json.loads(raqib("subscriptions", "list", "--json", "--config", str(cfg)).stdout)
    assert {s["id"]: s["query"] for s in listed}["s1"] == "قمة"
    for bad in (["--throttle", "-1/3600"], ["--throttle", "5/1e400"], ["--digest", "inf"], ["--digest", "nan"]):
        r = raqib(*add[:3], "الناتو", *add[4:], "--yes", "--replace", *bad)
        assert r.returncode == 2 and bad[0] in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)
    # one defined in alerts.yaml is changed there, not here (and listing does not touch the store)
    r = raqib("subscriptions", "remove", "managed", "--config", str(cfg))
    assert r.returncode == 2 and "alerts.yaml" in r.stderr


def test_trends_fill_gaps_and_keep_to_the_topics_asked(tmp_path):
    from datetime import UTC, datetime

    from monitor.store import Store
    from tests.helpers import make_article

    store = Store(tmp_path / "raqib.db")
    day = lambda d: datetime(2025, 3, d, 12, tzinfo=UTC)  # noqa: E731
    store.ingest([make_article("كورسك", "ا", link="https://x.org/1", published=day(1), topics=("kursk", "nato")),
                  make_article("كورسك", "ب", link="https://x.org/2", published=day(4), topics=("kursk",)),
                  make_article("كورسك", "ج", link="https://x.org/3", published=day(4), topics=("kursk",))],
                 [], {}, None)
    store.close()
    assert raqib("index", "reindex", "--data-dir", str(tmp_path)).returncode == 0
    r = raqib("trends", "topic:kursk", "--json", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["buckets"] == [f"2025-03-0{d}T00:00:00+00:00" for d in (1, 2, 3, 4)]
    assert got["topics"] == {"kursk": [1, 0, 0, 2]}  # nato is not asked about; gaps are zero
    table = raqib("trends", "topic:kursk", "--data-dir", str(tmp_path)).stdout.splitlines()
    assert table == ["day\tkursk", "2025-03-01\t1", "2025-03-02\t0", "2025-03-03\t0", "2025-03-04\t2"]
    negated = json.loads(raqib("trends", "-topic:nato", "--json", "--data-dir", str(tmp_path)).stdout)
    assert negated["topics"] == {"kursk": [2]}  # articles without nato, every topic they carry


async def test_feeds_list_shows_each_feeds_state(tmp_path, feed_server):
    import asyncio

    from tests.corpus import rss, rss_item
    from tests.e2e_setup import write_config

    async def run(*args):  # the feed server runs on this test's event loop: never block it
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "raqib.cli", *args, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(), err.decode()

    feed_server.set_feed("/ok.xml", rss([rss_item("الناتو", "https://e.org/1", "نص")]))
    feed_server.set_status("/bad.xml", 500)
    cfg = str(write_config(tmp_path, [("ok", feed_server.url("/ok.xml")), ("bad", feed_server.url("/bad.xml"))]))
    rows = {r["id"]: r for r in json.loads((await run("feeds", "list", "--json", "--config", cfg))[1])}
    assert rows["ok"]["last_poll"] is None and rows["bad"]["errors_in_a_row"] == 0
    assert (await run("once", "--config", cfg))[0] == 1
    code, out, _ = await run("feeds", "list", "--json", "--config", cfg)
    assert code == 1  # a feed is failing
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["ok"]["last_poll"] and rows["ok"]["errors_in_a_row"] == 0 and rows["ok"]["next_due"]
    assert rows["bad"]["errors_in_a_row"] == 1 and "500" in rows["bad"]["last_error"]
    assert rows["bad"]["backing_off_until"] == rows["bad"]["next_due"]
    _, out, _ = await run("once", "--force", "--config", cfg)  # polls the failing feed again at once
    assert json.loads(out.splitlines()[-1])["failed"][0]["id"] == "bad"
    rows = {r["id"]: r for r in json.loads((await run("feeds", "list", "--json", "--config", cfg))[1])}
    assert rows["bad"]["errors_in_a_row"] == 2
