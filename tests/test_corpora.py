"""Real-world and hostile feed corpora through Raqib's fetch → parse → analyze path.

Every file is served by the local feed server (with the headers its corpus prescribes) and read
by `Fetcher.fetch` + `parse_and_analyze`, exactly like a polled feed. Data comes from
../shared/data (see its README.md); each test skips when its folder is absent.

The defects these corpora exposed (unbounded entity expansion in feedparser's fallback
parser, <iframe> text, plain-text titles, control characters) have tests of their own below.
"""

from __future__ import annotations

import re
import time
import tracemalloc
import unicodedata
import uuid

import pytest

from monitor.fetcher import Fetcher, FetchSettings
from tests.corpus import DATA, need
from tests.corpus_serving import (
    FEEDPARSER,
    HOSTILE,
    MINIFLUX,
    NODE_FEEDPARSER,
    PICOFEED,
    REAL_FEED_CORPORA,
    RSS_PARSER,
    article_problems,
    et_channel_title,
    et_child_text,
    et_entries,
    et_root,
    feedparser_files,
    fetch_and_parse,
    oracle_text,
    parse_error_problem,
    real_feed_files,
    report,
    serve,
    skipped_entries,
    squash,
    url_path,
)

SETTINGS = FetchSettings(connect_timeout=5, read_timeout=10, total_timeout=20, retries=0,
                         allow_networks=("127.0.0.0/8",))

# Files of feedparser's corpus that are not RSS/Atom at all (CDF channels, a JSON Feed, an
# empty document): Raqib answers them with a ParseError. Anything beyond this is a regression.
MAX_FEEDPARSER_PARSE_ERRORS = 15

# Files to report separately instead of failing the corpus loops (none at present).
KNOWN_DEFECTS: dict[str, str] = {}


# ================================================================== 1. feedparser's corpus


async def test_feedparser_corpus_over_http(feed_server):
    need(FEEDPARSER / "MANIFEST.jsonl")
    files = feedparser_files()
    for f in files:
        serve(feed_server, url_path(f.key), f.path.read_bytes(), f.headers)

    started = time.monotonic()
    crashes, problems, parse_errors, known = [], [], [], []
    n_articles = 0
    async with Fetcher(SETTINGS) as fetcher:
        for f in files:
            url = feed_server.url(url_path(f.key))
            try:
                out = await fetch_and_parse(fetcher, url, source="feedparser-tests")
            except Exception as e:  # noqa: BLE001 - every crash is collected and reported
                crashes.append(f"{f.key}: {type(e).__name__}: {e}")
                continue
            if out.parse_error is not None:
                parse_errors.append(f"{f.key}: {out.parse_error.reason}")
                if (p := parse_error_problem(out)) is not None:
                    problems.append(f"{f.key}: {p}")
                continue
            n_articles += len(out.parsed.articles)
            for p in article_problems(out):
                (known if f.key in KNOWN_DEFECTS else problems).append(f"{f.key}: {p}")
    elapsed = time.monotonic() - started

    assert len(files) == 2107, f"MANIFEST.jsonl lists {len(files)} files, expected 2,107"
    assert not crashes, f"{len(crashes)} of {len(files)} files crashed Raqib:\n{report(crashes)}"
    assert not problems, (f"{len(problems)} broken invariants in {len(files)} files:\n"
                          f"{report(problems)}")
    assert len(parse_errors) <= MAX_FEEDPARSER_PARSE_ERRORS, (
        f"{len(parse_errors)} files were refused as not a feed (at most "
        f"{MAX_FEEDPARSER_PARSE_ERRORS} expected):\n{report(parse_errors)}")
    assert n_articles > 500, f"only {n_articles} articles from feedparser's corpus"
    assert feed_server.hits.total() >= len(files)  # really went over HTTP, one GET per file
    assert elapsed < 45, f"{len(files)} files took {elapsed:.1f}s"


# ================================================================== 2. real feeds

# Not feeds (HTML pages, OPML exports, generic XML, a document with junk after the root): a
# ParseError naming the URL, or no articles, is the right answer for these.
NOT_FEEDS = {
    "miniflux-testdata/internal/reader/encoding/testdata/iso-8859-1-meta-after-1024.html",
    "miniflux-testdata/internal/reader/encoding/testdata/iso-8859-1.html",
    "miniflux-testdata/internal/reader/encoding/testdata/utf8-meta-after-1024.html",
    "miniflux-testdata/internal/reader/encoding/testdata/utf8.html",
    "miniflux-testdata/internal/reader/xml/testdata/iso88591.xml",
    "miniflux-testdata/internal/reader/xml/testdata/iso88591_utf8_mismatch.xml",
    "node-feedparser-feeds/test/feeds/notafeed.html",
    "picofeed-fixtures/tests/fixtures/google-reader.opml",
    "picofeed-fixtures/tests/fixtures/newsbeuter.opml",
    "picofeed-fixtures/tests/fixtures/subscriptionList.opml",
    "picofeed-fixtures/tests/fixtures/tinytinyrss.opml",
    "rss-parser-inputs/test/input/unrecognized.rss",
}


async def test_real_feed_corpora_over_http(feed_server):
    for root in REAL_FEED_CORPORA:
        need(root)
    files = real_feed_files()
    for f in files:
        serve(feed_server, url_path(f.key), f.path.read_bytes(), f.headers)

    crashes, problems, counts = [], [], {}
    gzip_served = 0
    async with Fetcher(SETTINGS) as fetcher:
        for f in files:
            corpus = f.key.split("/")[0]
            counts[corpus] = counts.get(corpus, 0) + 1
            url = feed_server.url(url_path(f.key))
            try:
                out = await fetch_and_parse(fetcher, url, source=corpus)
            except Exception as e:  # noqa: BLE001
                crashes.append(f"{f.key}: {type(e).__name__}: {e}")
                continue
            gzip_served += "Content-Encoding" in f.headers
            if out.parse_error is not None:
                if f.key not in NOT_FEEDS:
                    problems.append(f"{f.key}: refused as not a feed: {out.parse_error.reason}")
                elif (p := parse_error_problem(out)) is not None:
                    problems.append(f"{f.key}: {p}")
                continue
            parsed = out.parsed
            if f.key in NOT_FEEDS:
                if parsed.articles:
                    problems.append(f"{f.key}: not a feed, yet {len(parsed.articles)} articles")
                continue
            problems += [f"{f.key}: {p}" for p in article_problems(out)]
            # no entry silently lost: each <item>/<entry> became an Article or a warning
            root = et_root(f.path.read_bytes())
            if root is not None:
                n_items = len(et_entries(root))
                got = len(parsed.articles) + skipped_entries(parsed)
                if got != n_items:
                    problems.append(f"{f.key}: {n_items} items in the file, {len(parsed.articles)}"
                                    f" articles + {skipped_entries(parsed)} skipped")

    assert not crashes, f"{len(crashes)} of {len(files)} files crashed Raqib:\n{report(crashes)}"
    assert not problems, f"{len(problems)} problems in {len(files)} files:\n{report(problems)}"
    assert counts == {"miniflux-testdata": 22, "node-feedparser-feeds": 29,
                      "picofeed-fixtures": 57, "rss-parser-inputs": 31}, counts
    assert gzip_served == 2


# Real feeds in legacy encodings: (file, Content-Type served, encoding Raqib must report (None:
# whatever it detected), a word that only decodes right with the right codec).
ENCODED = [
    ("miniflux-testdata/internal/reader/parser/testdata/encoding_WINDOWS-1251.xml",
     "application/rss+xml", "windows-1251", "Цитата"),
    ("picofeed-fixtures/tests/fixtures/ibash.ru.xml", "application/rss+xml", "windows-1251",
     "Цитата"),
    ("picofeed-fixtures/tests/fixtures/xakep.ru.xml", "application/rss+xml", "windows-1251",
     "Руководители разведки США"),
    ("node-feedparser-feeds/test/feeds/iconv.xml", "text/xml", "windows-1251", "Оренбурга"),
    # the charset named only in (and agreeing with) the header, and a wrong header (utf-8)
    ("node-feedparser-feeds/test/feeds/iconv.xml", "application/rss+xml; charset=windows-1251",
     "windows-1251", "Оренбурга"),
    ("node-feedparser-feeds/test/feeds/iconv.xml", "application/rss+xml; charset=utf-8",
     "windows-1251", "Оренбурга"),
    ("node-feedparser-feeds/test/feeds/compressed.xml", "application/rss+xml", "windows-1251",
     "Оренбурга"),  # gzip body, served with Content-Encoding: gzip
    ("miniflux-testdata/internal/reader/encoding/testdata/koi8r.xml", "application/rss+xml",
     "koi8-r", "Пример RSS ленты"),
    ("miniflux-testdata/internal/reader/xml/testdata/koi8r.xml", "text/xml", "koi8-r",
     "новость"),
    ("miniflux-testdata/internal/reader/parser/testdata/encoding_ISO-8859-1.xml",
     "application/rss+xml", "iso-8859-1", "Wochenrückblick"),
    ("rss-parser-inputs/test/input/encoding.rss", "application/rss+xml", "iso-8859-1",
     "Últimas Notícias"),
    ("picofeed-fixtures/tests/fixtures/univers_freebox.xml", "application/rss+xml",
     "iso-8859-1", "Zoé la remplaçante"),
    ("miniflux-testdata/internal/reader/encoding/testdata/iso-8859-1.xml", "application/xml",
     "iso-8859-1", "Café"),
    ("picofeed-fixtures/tests/fixtures/rss_20_iso8859-15.xml", "application/rss+xml",
     "iso-8859-15", "éàùç€@ïî"),
    ("miniflux-testdata/internal/reader/encoding/testdata/windows-1252.xml", "application/xml",
     "windows-1252", "Euro €"),
    # declared (or defaulted to) UTF-8 but really Latin-1: recovered with a warning
    ("miniflux-testdata/internal/reader/parser/testdata/no_encoding_ISO-8859-1.xml",
     "application/rss+xml", None, "très complexe"),
    ("picofeed-fixtures/tests/fixtures/cercle.psy.xml", "application/rss+xml", None,
     "Stéphane Gumpper"),
    ("rss-parser-inputs/test/input/uolNoticias.rss", "application/rss+xml", None,
     "simulações"),
]


@pytest.mark.parametrize(("key", "content_type", "encoding", "word"), ENCODED,
                         ids=[f"{k.rsplit('/', 1)[-1]}-{ct.split(';')[-1].strip()}"
                              for k, ct, _, _ in ENCODED])
async def test_legacy_encodings_decode_to_the_right_text(feed_server, key, content_type,
                                                        encoding, word):
    path = need(DATA / key)
    body = path.read_bytes()
    headers = {"Content-Type": content_type}
    if body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    url = serve(feed_server, "/enc.xml", body, headers)
    async with Fetcher(SETTINGS) as fetcher:
        out = await fetch_and_parse(fetcher, url)
    parsed = out.parsed
    assert parsed is not None, out.parse_error
    if encoding is not None:
        assert parsed.encoding.lower() == encoding
    texts = [parsed.title] + [f"{a.title}\n{a.summary}\n{a.content}" for a in parsed.articles]
    assert any(word in t for t in texts), f"{word!r} not found: mojibake? {texts[:3]!r}"
    for t in texts:
        assert "\ufffd" not in t, f"replacement character in {t[:80]!r}"
    # every title equals what the stdlib XML parser reads (ET honours the prolog's encoding;
    # the mislabelled files are read as the windows-1252 they really are). RSS titles are HTML
    # (univers_freebox.xml escapes its euro sign as &amp;#8364;), so both sides are read as such.
    root = et_root(body, fallback_encoding="windows-1252")
    assert root is not None
    assert parsed.title == oracle_text(et_channel_title(root) or "")
    et_titles = [oracle_text(et_child_text(i, "title") or "") for i in et_entries(root)]
    assert [a.title for a in parsed.articles if a.title] == [t for t in et_titles if t]
    assert problems_free(out)


def problems_free(out) -> bool:
    problems = article_problems(out)
    assert not problems, report(problems)
    return True


URDU_FEED = MINIFLUX / "internal/reader/parser/testdata/urdu_UTF8.xml"
URDU_ONLY = set("ٹڈڑںھہۂۓےی")  # letters of Urdu's alphabet that Arabic does not use


async def test_bbc_urdu_feed_keeps_rtl_titles_and_language(feed_server):
    body = need(URDU_FEED).read_bytes()
    url = serve(feed_server, "/urdu.xml", body, {"Content-Type": "application/rss+xml"})
    async with Fetcher(SETTINGS) as fetcher:
        out = await fetch_and_parse(fetcher, url, source="bbc-urdu")
    parsed = out.parsed
    assert parsed is not None, out.parse_error
    root = et_root(body)
    expected = [squash(et_child_text(i, "title") or "") for i in et_entries(root)]
    assert len(parsed.articles) == len(expected) == 26
    assert [a.title for a in parsed.articles] == expected  # byte-for-byte, RTL text intact
    assert parsed.title == "BBC News اردو - پاکستان کے لیے امریکی امداد کی بہار و خزاں"
    assert parsed.language == "ur"  # <language>ur</language>
    for a in parsed.articles:
        strong = [unicodedata.bidirectional(c) for c in a.title
                  if unicodedata.bidirectional(c) in ("L", "R", "AL")]
        assert strong[0] == "AL" and "L" not in strong, a.title  # right-to-left text
        assert URDU_ONLY & set(a.title + a.summary), a.title
        assert a.language == "ur", (a.title, a.language)
        assert a.summary and "<" not in a.summary
    assert problems_free(out)


async def test_large_and_gzip_real_feeds(feed_server):
    giant = need(RSS_PARSER / "test/input/giantbomb-podcast.rss")
    gz = need(NODE_FEEDPARSER / "test/feeds/invalid-characters-gzipped.xml")
    body = giant.read_bytes()
    assert len(body) > 1_500_000
    url = serve(feed_server, "/giant.rss", body, {"Content-Type": "application/rss+xml"})
    gz_url = serve(feed_server, "/gz.xml", gz.read_bytes(),
                   {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"})
    async with Fetcher(SETTINGS) as fetcher:
        started = time.monotonic()
        big = await fetch_and_parse(fetcher, url)
        assert time.monotonic() - started < 10
        inflated = await fetch_and_parse(fetcher, gz_url)
    assert len(big.parsed.articles) == len(et_entries(et_root(body))) == 730
    assert len(set(a.id for a in big.parsed.articles)) == 730
    assert len(inflated.body) > 800_000  # decompressed by the fetcher
    assert len(inflated.parsed.articles) == 25
    assert problems_free(big) and problems_free(inflated)


# ================================================================== 3. hostile XML

SECRET = f"RAQIB-SECRET-{uuid.uuid4().hex}"


def all_text(out) -> str:
    if out.parsed is None:
        return str(out.parse_error)
    p = out.parsed
    return "\n".join([p.title, *p.warnings] + [
        f"{a.title}\n{a.summary}\n{a.content}\n{a.link}\n{a.id}" for a in p.articles])


def _rss(ref: str) -> str:
    return (f'<rss version="2.0"><channel><title>t {ref}</title><item><title>T {ref}</title>'
            f'<description>D {ref}</description><guid>g-1</guid></item></channel></rss>')


def xxe_documents(file_url: str, http_url) -> dict[str, bytes]:
    """defusedxml's two XXE files aimed at our secret file / our server, and feed-shaped
    variants: general and parameter entities, external DTD subsets, DOCTYPE on one line (which
    feedparser's own DOCTYPE filter misses) and on separate lines."""
    ext_file = (HOSTILE / "external_file.xml").read_text()
    ext_http = (HOSTILE / "external.xml").read_text()
    dtd = (HOSTILE / "dtd.xml").read_text()
    docs = {
        "defusedxml/external_file.xml": ext_file.replace("file:///PATH/TO/xmltestdata/simple.xml",
                                                         file_url),
        "defusedxml/external.xml": ext_http.replace("http://www.w3schools.com/xml/note.xml",
                                                    http_url("w3schools-note")),
        "defusedxml/dtd.xml": dtd.replace(
            "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd", http_url("xhtml-dtd")),
    }
    for where, target in (("file", file_url), ("http", None)):
        t = target or http_url(f"ge-{where}")
        docs[f"rss-ge-{where}-multiline"] = (
            f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY ee SYSTEM "{t}">\n]>\n' + _rss("&ee;"))
        t = target or http_url(f"ge1-{where}")
        docs[f"rss-ge-{where}-oneline"] = (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY ee SYSTEM "{t}">]>' + _rss("&ee;"))
        t = target or http_url(f"pe-{where}")
        docs[f"rss-pe-{where}-oneline"] = (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % pe SYSTEM "{t}"> %pe;]>'
            + _rss("&leak;"))
        t = target or http_url(f"dtd-{where}")
        docs[f"rss-external-dtd-{where}"] = (
            f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{t}">' + _rss("&leak;"))
        t = target or http_url(f"dtd2-{where}")
        docs[f"rss-external-dtd-{where}-multiline"] = (
            f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{t}">\n' + _rss("&leak;"))
    return {k: v.encode() for k, v in docs.items()}


async def test_external_entities_never_read_files_or_fetch_urls(feed_server, tmp_path):
    need(HOSTILE)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    secret_dtd = tmp_path / "secret.dtd"
    secret_dtd.write_text(f'<!ENTITY leak "{SECRET}">')

    async def secret_handler(request):  # what an external entity would get if it were fetched
        from aiohttp import web

        text = f'<!ENTITY leak "{SECRET}">' if "dtd" in request.path or "pe-" in request.path \
            else SECRET
        return web.Response(text=text, content_type="application/xml")

    def http_url(name: str) -> str:
        path = f"/xxe/{name}"
        feed_server.set_handler(path, secret_handler)
        return feed_server.url(path)

    docs = xxe_documents(secret_file.as_uri(), http_url)
    # the file-targeted DTD variants read a DTD that would define &leak; as the secret
    for k in list(docs):
        if "dtd-file" in k or "pe-file" in k:
            docs[k] = docs[k].replace(secret_file.as_uri().encode(), secret_dtd.as_uri().encode())
    failures, outcomes = [], {}
    async with Fetcher(SETTINGS) as fetcher:
        for name, body in docs.items():
            assert SECRET.encode() not in body
            url = serve(feed_server, f"/hostile/{name}", body, {"Content-Type": "application/xml"})
            try:
                out = await fetch_and_parse(fetcher, url, source="hostile")
            except Exception as e:  # noqa: BLE001
                failures.append(f"{name}: crashed: {type(e).__name__}: {e}")
                continue
            outcomes[name] = out
            if SECRET in all_text(out):
                failures.append(f"{name}: the secret reached the parse result: {all_text(out)!r}")
            if out.parsed is not None:
                failures += [f"{name}: {p}" for p in article_problems(out)]
    xxe_hits = {p: n for p, n in feed_server.hits.items() if p.startswith("/xxe/")}
    if xxe_hits:
        failures.append(f"external entities were fetched from the feed server: {xxe_hits}")
    assert not failures, report(failures)
    assert len(outcomes) == 13
    # the feed-shaped ones still yield their (entity-free) article
    assert all(outcomes[k].parsed and len(outcomes[k].parsed.articles) == 1
               for k in outcomes if k.startswith("rss-"))


def _bomb_levels(levels: int) -> str:
    return '<!ENTITY a "1234567890">' + "".join(
        f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(levels))


def billion_laughs_documents() -> dict[str, bytes]:
    lol = _bomb_levels(8)  # &i; would be 10^9 characters
    return {
        "defusedxml/xmlbomb.xml": (HOSTILE / "xmlbomb.xml").read_bytes(),
        "defusedxml/xmlbomb2.xml": (HOSTILE / "xmlbomb2.xml").read_bytes(),
        "defusedxml/cyclic.xml": (HOSTILE / "cyclic.xml").read_bytes(),
        "rss-billion-laughs-multiline": (
            '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + lol.replace("><", ">\n<")
            + "\n]>\n" + _rss("&i;")).encode(),
        # on one line, feedparser's DOCTYPE filter misses the declarations and expat itself
        # expands them until its amplification limit (100x, after 8 MiB) stops it
        "rss-billion-laughs-oneline": (
            f'<?xml version="1.0"?><!DOCTYPE rss [{lol}]>' + _rss("&i;")).encode(),
    }


QUADRATIC_PAYLOAD = "B" * 10_000


def quadratic_documents() -> dict[str, bytes]:
    return {
        "defusedxml/quadratic.xml": (HOSTILE / "quadratic.xml").read_bytes(),
        # 19 KB of feed; expanded, its title and description would be 10 million characters each
        "rss-quadratic": (f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a '
                          f'"{QUADRATIC_PAYLOAD}">\n]>\n' + _rss("&a;" * 1000)).encode(),
    }


MAX_SECONDS = 5.0  # of CPU time: the work done, whatever else the machine is busy with
MAX_WALL = 15.0  # a hang guard; wall-clock time on a shared CI box is not a measure of work
MAX_PEAK = 50 * 1024 * 1024


async def _bounded(feed_server, fetcher, name: str, body: bytes) -> list[str]:
    """Fetch and parse one hostile document under tracemalloc; the limits it broke."""
    url = serve(feed_server, f"/bomb/{name}", body, {"Content-Type": "application/xml"})
    tracemalloc.start()
    started, cpu_started = time.monotonic(), time.process_time()
    try:
        out = await fetch_and_parse(fetcher, url, source="hostile")
    except Exception as e:  # noqa: BLE001
        return [f"{name}: crashed: {type(e).__name__}: {e}"]
    finally:
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    problems = []
    if cpu > MAX_SECONDS or elapsed > MAX_WALL:
        problems.append(f"{name}: took {cpu:.1f}s of CPU, {elapsed:.1f}s in all")
    if peak > MAX_PEAK:
        problems.append(f"{name}: tracemalloc peak {peak / 2**20:.0f} MiB")
    if out.parsed is not None:
        for a in out.parsed.articles:
            longest = max(len(a.title), len(a.summary), len(a.content))
            if longest > 10 * len(body) or "1234567890" * 3 in a.text or "B" * 20_000 in a.text:
                problems.append(f"{name}: expanded entity payload in an article "
                                f"({longest:,} characters from a {len(body):,}-byte body)")
        problems += [f"{name}: {p}" for p in article_problems(out)]
    elif (p := parse_error_problem(out)) is not None:
        problems.append(f"{name}: {p}")
    return problems


async def test_billion_laughs_is_bounded(feed_server):
    need(HOSTILE)
    problems = []
    async with Fetcher(SETTINGS) as fetcher:
        for name, body in billion_laughs_documents().items():
            problems += await _bounded(feed_server, fetcher, name, body)
    assert not problems, report(problems)


@pytest.mark.parametrize("name", ["defusedxml/quadratic.xml", "rss-quadratic"])
async def test_quadratic_blowup_is_bounded(feed_server, name):
    need(HOSTILE)
    async with Fetcher(SETTINGS) as fetcher:
        problems = await _bounded(feed_server, fetcher, name, quadratic_documents()[name])
    assert not problems, report(problems)


COVERED_ABOVE = {"quadratic.xml", "xmlbomb.xml", "xmlbomb2.xml", "cyclic.xml", "external.xml",
                 "external_file.xml"}


async def test_other_hostile_files_are_refused_cleanly(feed_server):
    """The rest of defusedxml's files (DTDs, XSLT, XSD, plain XML): ParseError or a clean result,
    quickly, with no request for the DTDs they name."""
    need(HOSTILE)
    problems = []
    async with Fetcher(SETTINGS) as fetcher:
        for path in sorted(HOSTILE.iterdir()):
            if path.name in COVERED_ABOVE:
                continue
            body = path.read_bytes()
            body = re.sub(rb'"https?://[^"]*"', f'"{feed_server.url("/xxe/dtd")}"'.encode(), body)
            problems += await _bounded(feed_server, fetcher, f"defusedxml/{path.name}", body)
    assert not [p for p in feed_server.hits if p.startswith("/xxe/")]
    assert not problems, report(problems)


# ================================================================== known defects, pinned


def _article_fields(out) -> list[str]:
    return [f for a in out.parsed.articles for f in (a.title, a.summary, a.content)]


async def test_iframe_fallback_markup_does_not_leak(feed_server):
    path = need(FEEDPARSER / "tests/wellformed/sanitize/entry_content_iframe.xml")
    url = serve(feed_server, "/iframe.xml", path.read_bytes(), {"Content-Type": "application/xml"})
    async with Fetcher(SETTINGS) as fetcher:
        out = await fetch_and_parse(fetcher, url)
    assert all("<b>" not in f for f in _article_fields(out)), _article_fields(out)


async def test_plain_text_title_keeps_angle_brackets(feed_server):
    path = need(FEEDPARSER / "tests/wellformed/atom/entry_title_text_plain_brackets.xml")
    url = serve(feed_server, "/plain.xml", path.read_bytes(), {"Content-Type": "application/xml"})
    async with Fetcher(SETTINGS) as fetcher:
        out = await fetch_and_parse(fetcher, url)
    assert out.parsed.articles[0].title == "History of the <blink> tag"


_C0 = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


async def test_real_feeds_carry_no_control_characters(feed_server):
    found = []
    async with Fetcher(SETTINGS) as fetcher:
        for rel in ("tests/fixtures/next_inpact_full.xml", "tests/fixtures/lincoln_loop.xml"):
            path = need(PICOFEED / rel)
            url = serve(feed_server, "/" + path.name, path.read_bytes(),
                        {"Content-Type": "application/rss+xml"})
            out = await fetch_and_parse(fetcher, url)
            found += [(path.name, m.group()) for f in _article_fields(out) for m in _C0.finditer(f)]
    assert not found, found
