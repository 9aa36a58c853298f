"""Byte-level fuzzing of real-shaped feeds through the parse path: every mutation either
parses — with every stored field capped and storable — or raises ParseError. Nothing else.

RAQIB_FUZZ_EXAMPLES raises the number of cases (default 300 per test) for a longer run."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.parser import MAX_BODY, MAX_LINK, MAX_TITLE, ParsedFeed, parse_feed
from tests.corpus import rss, rss_item

EXAMPLES = int(os.environ.get("RAQIB_FUZZ_EXAMPLES", "300"))
NOW = datetime(2025, 1, 1, tzinfo=UTC)

_ITEMS = [rss_item("قمة حلف الناتو في لاهاي", "https://e.org/1?utm_source=x", "<p>نص عن <b>كورسك</b></p>",
                   pub="Tue, 10 Jun 2025 10:00:00 GMT", content="<div>محتوى &amp; تفاصيل</div>"),
          rss_item("مذكرة بودابست", "https://e.org/2", "نص آخر")]
_ATOM = ('<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ar">'
         '<title>t</title><entry><id>urn:1</id><title type="html">&lt;b&gt;الناتو&lt;/b&gt;</title>'
         '<link href="https://e.org/a"/><updated>2025-01-01T00:00:00Z</updated>'
         '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">نص</div></content></entry></feed>')
SEEDS = [
    rss(_ITEMS),
    rss(_ITEMS, encoding="windows-1256"),
    rss(_ITEMS, declare=False).decode().encode("utf-16"),
    _ATOM.encode(),
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY org "Org">\n]>\n' + rss(_ITEMS, declare=False)[21:],
]
TOKENS = [b"&#x110000;", b"&#xD800;", b"&#", b"&org;", b'<!ENTITY a "xxxxxxxxxx">', b"<!DOCTYPE r [", b"]>",
          b"<!--", b"-->", b"<![CDATA[", b"]]>", b"&lt;plaintext&gt;", b"<ttl>\xc2\xb2</ttl>", b"<ttl>99999999</ttl>",
          b"<category>", b"</category>", b"</item>", b"<item>", b"<?xml version='1.0' encoding='\xfc'?>",
          b"encoding='unicode_escape'", b"\x00", b"\xff\xfe", b"\xfe\xff", b"\x4c\x6f\xa7\x94", b"<", b">", b"&",
          b'"', b"'", b"\\ud800", b"<language>" + b"x" * 50 + b"</language>"]
CONTENT_TYPES = [None, "application/rss+xml", "application/xml; charset=utf-16be", "text/xml",
                 "text/html; charset=windows-1256", "application/atom+xml; charset=cp037",
                 "application/xml; charset=\u00fc", "text/plain; charset=punycode"]

edit = st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "replace"]),
                 st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8)),
                 st.integers(1, 64))


def _mutate(seed: bytes, edits) -> bytes:
    body = bytearray(seed)
    for where, op, data, span in edits:
        i = int(where * len(body))
        if op == "insert":
            body[i:i] = data
        elif op == "delete":
            del body[i:i + span]
        else:
            body[i:i + len(data)] = data
    return bytes(body)


def _check(parsed: ParsedFeed) -> None:
    assert len(parsed.title) <= MAX_TITLE
    for a in parsed.articles:
        assert len(a.title) <= MAX_TITLE and len(a.link) <= MAX_LINK
        assert len(a.summary) <= MAX_BODY and len(a.content) <= MAX_BODY
        for text in (a.title, a.summary, a.content, a.link, a.language):
            text.encode("utf-8")  # storable: no lone surrogates


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), edits=st.lists(edit, min_size=1, max_size=6),
       content_type=st.sampled_from(CONTENT_TYPES))
def test_mutated_feeds_parse_or_fail_cleanly(seed, edits, content_type):
    body = _mutate(seed, edits)
    headers = {"content-type": content_type} if content_type else {}
    try:
        parsed = parse_feed(body, headers, "http://fuzz.test/feed", "fuzz", NOW)
    except ParseError:
        return
    _check(parsed)


@settings(max_examples=EXAMPLES, deadline=None)
@given(body=st.binary(max_size=512), content_type=st.sampled_from(CONTENT_TYPES))
def test_random_bytes_parse_or_fail_cleanly(body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    try:
        _check(parse_feed(body, headers, "http://fuzz.test/feed", "fuzz", NOW))
    except ParseError:
        pass


async def test_mutated_feeds_through_fetch_and_parse_workers(tmp_path, feed_server):
    """The real path — local HTTP server, fetcher, parse worker processes, store: each mutated
    feed is ok or its own recorded error; no worker dies, nothing crashes."""
    import random

    from monitor.config import load_config
    from raqib.pipeline import Pipeline
    from tests.e2e_setup import write_config

    rnd = random.Random(int(os.environ.get("RAQIB_FUZZ_SEED", "7")))
    n = max(40, EXAMPLES // 5)
    feeds = []
    for i in range(n):
        edits = [(rnd.random(), rnd.choice(["insert", "delete", "replace"]), rnd.choice(TOKENS),
                  rnd.randint(1, 64)) for _ in range(rnd.randint(1, 5))]
        ctype = rnd.choice(CONTENT_TYPES[1:])
        feed_server.set_feed(f"/m{i}", _mutate(rnd.choice(SEEDS), edits), content_type=ctype)
        feeds.append((f"m{i}", feed_server.url(f"/m{i}")))
    cfg = load_config(write_config(tmp_path, feeds, settings={"parse": {"workers": 2}}), None)
    async with Pipeline(cfg) as p:
        reports = await p.poll_all(list(cfg.feeds))
        states = await p.db(p.store.feed_states)
    assert len(reports) == n
    for r in reports:
        assert r.status in ("ok", "error"), r
        assert "died" not in r.error and "internal error" not in r.error, r
        if r.status == "error":
            assert states[r.url].error_count == 1 and states[r.url].last_error == r.error
    assert any(r.status == "ok" for r in reports) and any(r.status == "error" for r in reports)
