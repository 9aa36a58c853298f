"""The command line's output, driven as a user drives it: in a pseudo-terminal (colour,
prompts) and through pipes (plain text, a reader that goes away), with exact exit codes.
Issue 11 items 2, 3, 5, 6 and 8, and the README's command table."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.e2e_setup import ROOT
from tests.test_cli import _stored, raqib

FILLER = " ".join(["افتتحت الحكومة مشروعا جديدا للطرق في العاصمة."] * 8)
KURSK_SENTENCE = "وقالت مصادر إن القتال تجدد في كورسك صباح اليوم."
TITLE = "تقرير «الناتو» الأسبوعي"  # the paper's own quotation marks, not a highlight
BODY = f"{FILLER} {KURSK_SENTENCE} {FILLER} وأكد الناتو أن مذكرة بودابست لم تعد قائمة."
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data dir holding one tagged article whose opening says nothing of what it matched,
    and a second one that mentions الناتو only in passing."""
    from monitor.analysis import analyze_article
    from monitor.config import load_config
    from monitor.store import Store
    from monitor.topics import build_tagger
    from tests.helpers import make_article

    d = tmp_path_factory.mktemp("cli-output")
    tagger = build_tagger(load_config(ROOT / "config").topics)
    arts = [analyze_article(make_article(TITLE, BODY, link="https://x.org/report"), tagger),
            analyze_article(make_article("أخبار الطقس", "أمطار غزيرة. وفي خبر آخر اجتمع الناتو.",
                                         link="https://x.org/weather"), tagger)]
    store = Store(d / "raqib.db")
    store.ingest(arts, [], {}, None)
    store.close()
    r = raqib("index", "reindex", "--data-dir", str(d))
    assert r.returncode == 0, r.stderr
    return d


def search_json(data, query: str) -> dict:
    r = raqib("search", query, "--json", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def the_report(page: dict) -> dict:
    [hit] = [h for h in page["hits"] if h["link"] == "https://x.org/report"]
    return hit


def marked(text: str, marks: list[dict]) -> list[str]:
    return [text[m["start"]:m["end"]] for m in marks]


# ------------------------------------------------------------------ JSON: offsets, not marks

def test_json_hit_shape_carries_offsets_and_no_inline_marks(data):
    hit = the_report(search_json(data, "الناتو"))
    assert set(hit) == {"id", "title", "link", "source", "published", "language", "topics", "score",
                        "snippet", "title_marks", "mentions"}
    assert set(hit["snippet"]) == {"text", "marks", "field", "offset", "cut_start", "cut_end"}
    assert hit["title"] == TITLE  # the text as published: its « » are its own
    assert hit["title_marks"] == [{"start": 7, "end": 13, "field": "title", "topic": None}]
    assert marked(hit["title"], hit["title_marks"]) == ["الناتو"]
    snip = hit["snippet"]
    assert marked(snip["text"], snip["marks"]) == ["الناتو"]
    assert BODY[snip["offset"]:snip["offset"] + len(snip["text"])] == snip["text"]
    assert snip["cut_start"] and not snip["cut_end"] and snip["field"] == "body"
    # the tagger's spans, into title + "\n" + body, as `raqib tag` prints them
    full = f"{TITLE}\n{BODY}"
    assert {m["topic"] for m in hit["mentions"]} == {"nato", "kursk", "budapest_memorandum"}
    for m in hit["mentions"]:
        assert full[m["start"]:m["end"]] == m["text"]


def test_a_phrase_is_one_span(data):
    snip = the_report(search_json(data, '"مذكرة بودابست"'))["snippet"]
    assert marked(snip["text"], snip["marks"]) == ["مذكرة بودابست"]


def test_topic_snippet_is_the_sentence_of_the_first_mention(data):
    hit = the_report(search_json(data, "topic:kursk"))
    assert hit["snippet"]["text"] == KURSK_SENTENCE
    assert hit["snippet"]["marks"] == [{"start": 30, "end": 35, "field": "body", "topic": "kursk"}]
    assert hit["title_marks"] == []  # the title does not mention Kursk; its «الناتو» is not asked for
    r = raqib("search", "topic:kursk", "--data-dir", str(data))  # piped: the same, bracketed
    assert r.returncode == 0 and "وقالت مصادر إن القتال تجدد في [كورسك] صباح اليوم." in r.stdout


def test_word_snippet_is_the_window_holding_most_of_the_query(data):
    snip = the_report(search_json(data, "بودابست الناتو"))["snippet"]
    # الناتو alone is in the title; the body's window holds both words, not the opening
    assert marked(snip["text"], snip["marks"]) == ["الناتو", "بودابست"]
    assert snip["text"] == "وأكد الناتو أن مذكرة بودابست لم تعد قائمة."  # from the start of its sentence


# ------------------------------------------------------------------ pipes

def test_piped_output_is_plain_with_brackets_or_none(data):
    r = raqib("search", "الناتو", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert "تقرير «[الناتو]» الأسبوعي" in r.stdout and "\x1b[" not in r.stdout
    assert r.stdout.startswith("2 articles\n")
    r = raqib("search", "الناتو", "--highlight", "none", "--data-dir", str(data))
    assert r.returncode == 0 and TITLE in r.stdout and "[الناتو]" not in r.stdout
    r = raqib("search", "الناتو", "--highlight", "sparkles", "--data-dir", str(data))
    assert r.returncode == 2 and "--highlight" in r.stderr and len(r.stderr.splitlines()) == 1


def test_a_closed_pipe_is_quiet_and_exits_141(tmp_path):
    _stored(tmp_path, 1000)  # ~150 KB: more than a pipe holds, so the writer meets the closed end
    p = subprocess.Popen([sys.executable, "-m", "raqib.cli", "search", "الناتو", "--limit", "1000",
                          "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert p.stdout.readline() == b"1000 articles\n"
    p.stdout.close()  # `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(60) == 141 and err == ""
    sh = subprocess.run(f"{sys.executable} -m raqib.cli search الناتو --limit 1000 --data-dir {tmp_path} | head -1;"
                        " echo \"status=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert sh.stdout == "1000 articles\nstatus=141\n" and sh.stderr == ""


# ------------------------------------------------------------------ a pseudo-terminal

def in_terminal(*args: str, answer: str | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run raqib with stdin, stdout and stderr on a pseudo-terminal (200 columns); type
    `answer` when it asks [y/N]. Returns (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    p = subprocess.Popen([sys.executable, "-m", "raqib.cli", *args], stdin=slave, stdout=slave,
                         stderr=slave, cwd=ROOT, env=env, start_new_session=True)
    os.close(slave)
    out, sent, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if answer is not None and not sent and b"[y/N]" in out:
                    os.write(master, answer.encode())
                    sent = True
            elif p.poll() is not None:
                break
        else:
            p.kill()
            raise AssertionError(f"raqib {args} did not finish: {out[-500:]!r}")
        return p.wait(timeout), out.decode("utf-8", "replace")
    finally:
        os.close(master)


def test_terminal_shows_colour_not_brackets(data):
    code, out = in_terminal("search", "topic:kursk الناتو", "--data-dir", str(data))
    assert code == 0, out
    assert ANSI.search(out), out  # bold colour around the matches
    plain = ANSI.sub("", out)
    assert TITLE in plain and "[الناتو]" not in plain and "[كورسك]" not in plain
    # the match itself is what is coloured: topic mentions in cyan (36), words in yellow (33)
    assert re.search(r"\x1b\[[0-9;]*36[0-9;]*mكورسك\x1b\[0m", out), out
    assert re.search(r"\x1b\[[0-9;]*33[0-9;]*mالناتو\x1b\[0m", out), out


def test_terminal_prompt_is_answered_or_refused(tmp_path):
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [], channels={"log": {"type": "log"}})
    add = ("subscriptions", "add", "s1", "الناتو", "--channel", "log", "--config", str(cfg))
    code, out = in_terminal(*add, answer="n\n")
    assert code == 1 and "save this subscription? [y/N]" in out and "not saved" in out
    assert json.loads(raqib("subscriptions", "list", "--json", "--config", str(cfg)).stdout) == []
    code, out = in_terminal(*add, answer="y\n")
    assert code == 0 and "saved s1" in out, out
    code, out = in_terminal(*add, answer="y\n")  # an existing id: an error, never asked
    assert code == 2 and "--replace" in out and "[y/N]" not in out
    r = raqib(*add, "--replace", stdin="y\n")  # a pipe is no consent, whatever it says
    assert r.returncode == 2 and "--yes" in r.stderr
    code, out = in_terminal(*add, "--replace", "--yes")
    assert code == 0 and "[y/N]" not in out and "saved s1" in out


def test_terminal_tables_and_pipe_tables(tmp_path):
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [], channels={"log": {"type": "log"}})
    assert raqib("subscriptions", "add", "s1", "الناتو", "--channel", "log", "--throttle", "5/600",
                 "--yes", "--config", str(cfg)).returncode == 0
    code, out = in_terminal("subscriptions", "list", "--config", str(cfg))
    assert code == 0 and ("┃" in out or "│" in out), out  # a drawn table on a terminal
    assert "5/600s" in out and "الناتو" in out
    r = raqib("subscriptions", "list", "--config", str(cfg))
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["id\tquery\tchannels\tthrottle\tdigest\tfrom\tstate",
                                     "s1\tالناتو\tlog\t5/600s\t-\tcli\tactive"]
    [row] = json.loads(raqib("subscriptions", "list", "--json", "--config", str(cfg)).stdout)
    assert set(row) == {"id", "name", "query", "channels", "throttle_max", "throttle_per", "digest_minutes",
                        "origin", "backfill", "created", "paused", "managed_by"}
    assert row["throttle_max"] == 5 and row["throttle_per"] == 600 and row["channels"] == ["log"]


# ------------------------------------------------------------------ stable JSON shapes

def test_once_summary_has_the_same_keys_every_run(tmp_path):
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [("down", "http://127.0.0.1:9/feed.xml")])
    runs = [raqib("once", "--config", str(cfg)) for _ in range(2)]  # fails, then backs off
    assert [r.returncode for r in runs] == [1, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout.splitlines()[-1]) for r in runs)
    assert set(first) == set(second) >= {"feeds", "ok", "not-modified", "error", "retry-later", "backing-off",
                                         "new", "updated", "indexed", "failed"}
    assert first["error"] == 1 and second["backing-off"] == 1 and second["error"] == 0


def test_index_status_speaks_plainly(data):
    r = raqib("index", "status", "--data-dir", str(data))
    assert r.returncode == 0 and "{'" not in r.stdout and "health:" in r.stdout
    st = json.loads(raqib("index", "status", "--json", "--data-dir", str(data)).stdout)
    assert {"backend", "health", "indexed_documents", "stored_articles", "outbox", "dead_letters"} <= set(st)
    assert st["indexed_documents"] == st["stored_articles"] == 2


# ------------------------------------------------------------------ alerts carry the same spans

def test_alert_payload_and_email_carry_the_snippet_spans():
    """The webhook JSON and the HTML mail mark what search marks, after the feed's invisible
    characters and line breaks are cleaned out of the snippet (offsets move with the text)."""
    from datetime import UTC, datetime

    from alerts.message import AlertItem, render_html, render_markdown, render_text, to_json
    from monitor.analysis import analyze_article
    from monitor.config import load_config
    from monitor.highlight import explain, wanted
    from monitor.query import parse
    from monitor.topics import build_tagger
    from tests.helpers import make_article

    tagger = build_tagger(load_config(ROOT / "config").topics)
    body = f"{FILLER}\n\nوقالت\u200b مصادر  إن «القتال» تجدد في كورسك صباح اليوم. {FILLER}"
    a = analyze_article(make_article(TITLE, body), tagger)
    _, snip = explain(a, wanted(parse("topic:kursk")))
    item = AlertItem("d1", "s1", "kursk", "topic:kursk", a.id, a.title, a.source, a.link, a.topics,
                     snip.text, datetime(2025, 1, 1, tzinfo=UTC), "ar",
                     tuple((m.start, m.end, m.topic) for m in snip.marks))
    out = to_json([item])["items"][0]["snippet"]
    assert out["text"] == "وقالت مصادر إن «القتال» تجدد في كورسك صباح اليوم."  # quotes kept as text
    assert out["marks"] == [{"start": 32, "end": 37, "field": "body", "topic": "kursk"}]
    assert "<mark>كورسك</mark>" in render_html([item]) and "<mark>القتال" not in render_html([item])
    assert "**كورسك**" in render_markdown([item])
    assert "«القتال»" in render_text([item])[1]


# ------------------------------------------------------------------ README matches --help

def _commands(*path: str) -> list[str]:
    """The subcommands `raqib PATH --help` lists (argparse's block under the COMMAND/ACTION line)."""
    r = subprocess.run([sys.executable, "-m", "raqib.cli", *path, "--help"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() in ("COMMAND", "ACTION"))
    except StopIteration:
        return []
    out = []
    for line in lines[at + 1:]:
        if not line.startswith("    "):
            break
        if not line.startswith("     "):
            out.append(line.split()[0])
    return out


def test_readme_command_table_matches_help():
    leaves = []
    for cmd in _commands():
        subs = _commands(cmd)
        leaves += [f"{cmd} {s}" for s in subs] if subs else [cmd]
    assert "search" in leaves and "index status" in leaves  # the parse found something
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `raqib ")]
    documented = set()
    for row in rows:
        words = row.split("`")[1].split()[1:3]  # "raqib index status [--json]" -> index status
        name = words[:2] if len(words) == 2 and re.fullmatch(r"[a-z][a-z-]*", words[1]) else words[:1]
        documented.add(" ".join(name))
    missing = [c for c in leaves if c not in documented]
    stale = [c for c in documented if c not in leaves]
    assert not missing, f"commands missing from the README table: {missing}"
    assert not stale, f"README table rows for commands that do not exist: {stale}"


# ------------------------------------------------------------------ the rest of the issue, as a user meets it

def test_config_errors_name_the_key_the_file_and_the_line(tmp_path):
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [("a", "http://127.0.0.1:9/a.xml")])
    (cfg / "feeds.yaml").write_text("feeds:\n  - id: a\n    ulr: http://x.org/f\n", encoding="utf-8")
    r = raqib("--config", str(cfg), "search", "الناتو")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert "feeds.yaml:3: feeds[0].ulr: unknown key 'ulr' — did you mean 'url'?" in r.stderr
    (cfg / "feeds.yaml").write_text("feeds: []\n", encoding="utf-8")
    r = raqib("once", "--config", str(cfg))
    assert r.returncode == 2 and "at least one feed is needed" in r.stderr and "feeds.yaml" in r.stderr


def test_run_says_when_each_feed_is_due(tmp_path):
    import signal

    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [("down", "http://127.0.0.1:9/feed.xml")], settings={"log": {"level": "INFO"}})
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "raqib.cli", "run", "--config", str(cfg)], cwd=ROOT,
                             stdout=out, stderr=out)
        try:
            for _ in range(1200):
                if b"service started" in log.read_bytes():
                    break
                time.sleep(0.05)
        finally:
            p.send_signal(signal.SIGTERM)
            code = p.wait(60)
    text = log.read_text(encoding="utf-8")
    assert code == 0, text
    assert re.search(r"feed scheduled feed=down next_poll=\d{4}-\d\d-\d\dT", text), text


def test_cleaning_a_snippet_moves_its_marks_with_the_text():
    """Property: clean_marked() cleans exactly as clean_field() does, and each mark still covers
    the cleaned text of what it covered (invisible characters and line breaks dropped or folded)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from alerts.message import clean_field, clean_marked

    alphabet = st.sampled_from(list("اب ت\n\t  \u200b\u200f\u202eX@y") + ["كورسك"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(alphabet, max_size=40).map("".join), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8))))
    def check(text, raw):
        marks, last = [], 0
        for s, n in sorted(raw):  # disjoint, in order, inside the text
            s = max(s, last)
            if s + n <= len(text) and n:
                marks.append((s, s + n, None))
                last = s + n
        out, moved = clean_marked(text, marks)
        assert out == clean_field(text)
        wanted = [clean_field(text[s:e]) for s, e, _ in marks]
        assert [out[s:e] for s, e, _ in moved] == [w for w in wanted if w]

    check()


def test_highlighting_finds_every_word_the_query_matches():
    """Property: the suffix screen in monitor.highlight finds exactly the words a full
    tokenization (every word's forms) finds, diacritics, clitics and phrases included."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from monitor.arabic import WORD_RE, forms, query_key
    from monitor.highlight import _query_spans, keys_wanted
    from monitor.tagger import _normalize_with_map

    words = ["الناتو", "للناتو", "والنَّاتُو", "ناتو", "سيناتور", "كورسك", "بكورسك", "مذكرة", "لمذكرة",
             "بودابست", "NATO", "nato_x", "قمة"]
    keys = {query_key(w) for w in ("الناتو", "كورسك", "nato")}

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(words), st.sampled_from([" ", "، ", "\n", "«", "» ", "-"])),
                    max_size=25))
    def check(parts):
        text = "".join(w + sep for w, sep in parts)
        norm, to_orig = _normalize_with_map(text)
        full = [to_orig(m.start()) for m in WORD_RE.finditer(norm) if keys & set(forms(m.group()))]
        assert [s for s, _, _ in _query_spans(text, keys_wanted(keys), "body")] == full

    check()
