"""Serve the real-feed corpora in ../shared/data over the local feed server and check what Raqib
makes of them (helpers for tests/test_corpora.py).

Every file goes through the production path: `Fetcher.fetch` over real HTTP, then
`parse_and_analyze` with the configured tagger. The checks below are the invariants every
Article must keep whatever the input: an id, an aware UTC `published` that is not in the future,
`fetched` set, and title/summary/content that are plain text (no markup leaking through).
"""

from __future__ import annotations

import html

import asyncio
import functools
import gzip
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import feedparser
from aiohttp import web

from monitor.config import load_config
from monitor.errors import ParseError
from monitor.fetcher import Fetcher
from monitor.parser import ParsedFeed
from raqib.pipeline import parse_and_analyze
from monitor.tagger import Tagger
from monitor.topics import build_tagger
from tests.corpus import DATA

FEEDPARSER = DATA / "feedparser-tests"
MINIFLUX = DATA / "miniflux-testdata"
NODE_FEEDPARSER = DATA / "node-feedparser-feeds"
PICOFEED = DATA / "picofeed-fixtures"
RSS_PARSER = DATA / "rss-parser-inputs"
HOSTILE = DATA / "hostile-xml" / "defusedxml" / "xmltestdata"
REAL_FEED_CORPORA = (MINIFLUX, NODE_FEEDPARSER, PICOFEED, RSS_PARSER)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"

# Upstream serves its http tests with this type when the file names none (see PROVENANCE.md);
# the other files are parsed from disk upstream, which application/xml mimics (no charset, so
# the XML prolog / BOM decides, exactly as without HTTP).
HTTP_DEFAULT_TYPE = "text/xml"
FILE_DEFAULT_TYPE = "application/xml"

_TYPES = {".rss": "application/rss+xml", ".atom": "application/atom+xml",
          ".rdf": "application/rdf+xml", ".xml": "application/xml", ".it": "application/rss+xml",
          ".opml": "text/x-opml", ".html": "text/html", ".json": "application/json",
          ".xsl": "application/xslt+xml", ".xsd": "application/xml"}

# HTML-ish tags that must never survive into a plain-text field as markup.
TAG_RE = re.compile(
    r"<\s*/?\s*(?:p|div|span|a|b|i|u|em|strong|br|hr|img|script|style|iframe|table|tr|td|ul|ol|"
    r"li|h[1-6]|blockquote|pre|code|html|head|body|font|center|object|embed|video|audio|source|"
    r"figure|noscript|svg|link|meta|input|form|frame|frameset|applet|base)\b[^<>]*>", re.I)
TEXT_FIELDS = ("title", "summary", "content")


@functools.lru_cache(maxsize=1)
def tagger() -> Tagger:
    return build_tagger(load_config(CONFIG_DIR).topics)


# ------------------------------------------------------------------ the corpora


@dataclass(frozen=True)
class CorpusFile:
    key: str  # path shown in reports, relative to ../shared/data
    path: Path
    headers: dict[str, str]  # response headers to serve, as the corpus says


def feedparser_files() -> list[CorpusFile]:
    """Every file of feedparser's corpus with its `Header:` lines (MANIFEST.jsonl)."""
    out = []
    with open(FEEDPARSER / "MANIFEST.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            headers = dict(row["headers"])
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = HTTP_DEFAULT_TYPE if row["is_http"] else FILE_DEFAULT_TYPE
            out.append(CorpusFile(f"feedparser-tests/{row['path']}", FEEDPARSER / row["path"],
                                  headers))
    return out


def is_gzip(body: bytes) -> bool:
    return body[:2] == b"\x1f\x8b"


def real_feed_files() -> list[CorpusFile]:
    """Every data file of the four real-feed corpora, with a plausible Content-Type; gzip bodies
    (node-feedparser's compressed.xml, invalid-characters-gzipped.xml) with Content-Encoding."""
    out = []
    for root in REAL_FEED_CORPORA:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.name in ("LICENSE", "PROVENANCE.md"):
                continue
            headers = {"Content-Type": _TYPES.get(p.suffix.lower(), "application/xml")}
            with open(p, "rb") as f:
                if is_gzip(f.read(2)):
                    headers["Content-Encoding"] = "gzip"
            out.append(CorpusFile(str(p.relative_to(DATA)), p, headers))
    return out


def url_path(key: str) -> str:
    return "/corpus/" + key


# ------------------------------------------------------------------ serving and parsing


def serve(server, path: str, body: bytes, headers: dict[str, str]) -> str:
    """Answer GET `path` with exactly these bytes and headers (nothing added, nothing
    re-encoded: a Content-Encoding: gzip file is sent as the gzip bytes it is)."""
    frozen = dict(headers)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers=frozen)

    server.set_handler(path, handler)
    return server.url(path)


@dataclass
class Outcome:
    url: str
    fetched: datetime
    parsed: ParsedFeed | None = None
    parse_error: ParseError | None = None
    body: bytes = b""
    headers: dict[str, str] | None = None


async def fetch_and_parse(fetcher: Fetcher, url: str, source: str = "corpus",
                          declared_language: str = "") -> Outcome:
    """Raqib's path for one feed: fetch, then parse and analyze. ParseError is an outcome;
    anything else propagates to the caller, which reports it as a crash."""
    result = await fetcher.fetch(url)
    fetched = datetime.now(UTC)
    out = Outcome(url, fetched, body=result.body or b"", headers=result.headers)
    try:
        # In a thread, as Pipeline does with parse.workers = 0: should the XML parser ever fetch
        # an external entity from the feed server, the request is answered and recorded instead
        # of dead-locking the event loop that serves it.
        out.parsed = await asyncio.to_thread(parse_and_analyze, out.body, result.headers, url,
                                             source, fetched, declared_language, tagger())
    except ParseError as e:
        out.parse_error = e
    return out


# ------------------------------------------------------------------ invariants


class _TextOracle(HTMLParser):
    """The visible text of an HTML fragment by the stdlib parser, independent of lxml."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def squash(text: str) -> str:
    return " ".join(text.split())


def oracle_text(value: str) -> str:
    p = _TextOracle()
    try:
        p.feed(value)
        p.close()
    except Exception:  # noqa: BLE001 - the oracle must never be the thing that fails
        return squash(value)
    return squash("".join(p.parts))


def raw_values(body: bytes, headers: dict[str, str]) -> list[str]:
    """What feedparser hands the parse stage for each entry (the HTML html_to_text receives)."""
    d = feedparser.parse(body, response_headers=headers, sanitize_html=False,
                         resolve_relative_uris=False)
    def as_html(value: str, detail) -> str:
        # a text/plain value is text: its angle brackets are characters, not tags
        return html.escape(value) if (detail or {}).get("type") == "text/plain" else value

    values = []
    for e in d.entries:
        values += [as_html(e.get("title") or "", e.get("title_detail")),
                   as_html(e.get("summary") or "", e.get("summary_detail"))]
        values += [as_html(c.get("value") or "", c) for c in e.get("content") or ()]
    return values


def article_problems(out: Outcome) -> list[str]:
    """Broken invariants of the articles in one outcome, as readable lines."""
    assert out.parsed is not None
    problems = []
    leaks: list[tuple[str, str]] = []
    for n, a in enumerate(out.parsed.articles):
        where = f"article {n} ({a.title[:40]!r})"
        if not a.id:
            problems.append(f"{where}: empty id")
        if a.feed_url != out.url:
            problems.append(f"{where}: feed_url {a.feed_url!r} is not the fetched URL")
        for name in ("published", "fetched"):
            t = getattr(a, name)
            if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() != timedelta(0):
                problems.append(f"{where}: {name} {t!r} is not an aware UTC datetime")
        if a.fetched != out.fetched:
            problems.append(f"{where}: fetched {a.fetched} is not the fetch time {out.fetched}")
        if a.published.tzinfo is not None and a.published > out.fetched:
            problems.append(f"{where}: published {a.published} is in the future "
                            f"(fetched {out.fetched})")
        for field in TEXT_FIELDS:
            value = getattr(a, field)
            if not isinstance(value, str):
                problems.append(f"{where}: {field} is {type(value).__name__}, not str")
                continue
            for m in TAG_RE.finditer(value):
                leaks.append((f"{where}: {field} keeps markup {m.group(0)[:60]!r}", m.group(0)))
    if leaks:
        # A tag-like string is fine when the source meant it as text (`&lt;script&gt;` inside
        # <code>): the stdlib HTML parser, reading the same value feedparser produced, sees it
        # as text too. Otherwise it is markup that leaked through html_to_text.
        texts = " \n ".join(oracle_text(v) for v in raw_values(out.body, out.headers or {}))
        problems += [msg for msg, tag in leaks if squash(tag) not in texts]
    return problems


def parse_error_problem(out: Outcome) -> str | None:
    e = out.parse_error
    assert e is not None
    if out.url not in str(e) or e.url != out.url:
        return f"ParseError does not name the URL: {e}"
    if not e.reason.strip():
        return "ParseError without a reason"
    return None


# ------------------------------------------------------------------ independent readers


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def et_root(body: bytes, fallback_encoding: str | None = None) -> ET.Element | None:
    """The document by the stdlib XML parser (which honours the XML prolog's encoding)."""
    if is_gzip(body):
        body = gzip.decompress(body)
    try:
        return ET.fromstring(body)
    except (ET.ParseError, LookupError, ValueError):  # LookupError: an unknown declared encoding
        if fallback_encoding is None:
            return None
        try:
            return ET.fromstring(body.decode(fallback_encoding))
        except (ET.ParseError, LookupError, ValueError):
            return None


def et_entries(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter() if _local(e.tag) in ("item", "entry")]


def et_child_text(el: ET.Element, name: str) -> str | None:
    return next(("".join(c.itertext()) for c in el if _local(c.tag) == name), None)


def et_channel_title(root: ET.Element) -> str | None:
    for el in root.iter():
        if _local(el.tag) in ("channel", "feed"):
            return et_child_text(el, "title")
    return None


def skipped_entries(parsed: ParsedFeed) -> int:
    return sum(1 for w in parsed.warnings if w.startswith("entry ") and " skipped: " in w)


def report(lines: Iterable[str], limit: int = 60) -> str:
    lines = list(lines)
    shown = "\n".join(f"  - {line}" for line in lines[:limit])
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return shown + more
