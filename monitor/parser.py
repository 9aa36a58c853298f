"""The parse stage: raw feed bytes (+ response headers) → Article records.

feedparser gets the undecoded bytes and the HTTP headers, so a charset declared only in
Content-Type (windows-1256, ISO-8859-6) decodes correctly; handing it decoded text or dropping
the headers silently produces mojibake. This module is pure (no I/O) so it can run in a worker
process and be tested on corpus files.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
import lxml.html
from lxml import etree

from monitor.errors import ParseError
from monitor.models import Article

# Tracking parameters dropped from links before they serve as identity.
_TRACKING = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|ocid|at_medium|at_campaign|"
    r"at_custom\d*|at_link[a-z_]*|at_format|at_bbc_team|at_ptr_name|cmpid|ns_[a-z_]+|"
    r"xtor|_ga|igshid|ref|ref_src|rss|from)$", re.IGNORECASE)
_BLOCK = ("p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
          "blockquote", "section", "article", "figure", "figcaption", "pre", "table", "hr")
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")
_C0 = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DROP = ("script", "style", "noscript", "iframe", "noembed", "noframes", "template", "object")
_BLANKS = re.compile(r"\s*\n\s*")
FUTURE_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True)
class ParsedFeed:
    articles: tuple[Article, ...]
    warnings: tuple[str, ...]
    encoding: str
    version: str
    title: str
    language: str
    ttl_minutes: int | None


def canonical_link(url: str) -> str:
    """The link without tracking parameters, fragment or default port; scheme/host lower-cased."""
    if not url:
        return ""
    try:
        p = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    query = urlencode([(k, v) for k, v in parse_qsl(p.query, keep_blank_values=True)
                       if not _TRACKING.match(k)])
    netloc = (p.hostname or "").lower()
    if p.port and not ((p.scheme == "http" and p.port == 80) or (p.scheme == "https" and p.port == 443)):
        netloc += f":{p.port}"
    return urlunsplit((p.scheme.lower(), netloc, p.path or "/", query, ""))


def article_id(guid: str, link: str, title: str, published: str) -> str:
    """Stable across polls and feeds: the guid, else the canonical link, else title + date."""
    key = guid.strip() if guid and guid.strip() else ""
    if key.startswith(("http://", "https://")):
        key = canonical_link(key)
    if not key:
        key = canonical_link(link) or f"{title}\0{published}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def html_to_text(value: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities decoded, blocks on their own line."""
    if not value:
        return ""
    if "<" not in value:
        return _tidy(html.unescape(value))
    try:
        root = lxml.html.fragment_fromstring(value, create_parent="div")
    except (etree.ParserError, ValueError):
        return _tidy(html.unescape(re.sub(r"<[^>]*>", " ", value)))
    for bad in list(root.iter(*_DROP)):
        bad.drop_tree()
    for el in root.iter(*_BLOCK):
        el.tail = "\n" + (el.tail or "")
    return _tidy(root.text_content())


def _tidy(text: str) -> str:
    return _BLANKS.sub("\n", _SPACES.sub(" ", _C0.sub("", text))).strip()


def plain_or_html(value: str, detail: dict | None) -> str:
    """Text of a feed field: markup removed only where the feed says the value is markup
    (an Atom type="text" title may legitimately read "the <blink> tag")."""
    kind = (detail or {}).get("type", "text/html")
    if kind == "text/plain":
        return _tidy(value)
    return html_to_text(value)


# ---- XML entity defences ----
# feedparser re-admits internal DTD entities with plain-text values and, when expat refuses a
# document, its fallback parser expands them without any limit (a 19 KB feed became 10-million-
# character fields). Entities are stripped before feedparser sees the body; small ones that
# real feeds use are kept only while their total expansion stays within a budget.
_PROLOG_END = re.compile(rb"<(?![?!])[\w:]")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(%\s*)?([\w.:-]+)\s+(.*?)>", re.S | re.I)
_HAS_ENTITY = re.compile(rb"<!ENTITY", re.I)
_SAFE_VALUE = re.compile(rb"^(['\"])([^&%<'\"]{0,64})\1\s*$", re.S)
ENTITY_BUDGET = 1_000_000  # bytes that entity references may add to a document


def defuse_entities(body: bytes, url: str) -> bytes:
    """Remove dangerous entity declarations from the prolog; refuse oversized expansion."""
    m = _PROLOG_END.search(body)
    end = m.start() if m else len(body)
    if not _HAS_ENTITY.search(body, 0, end):
        return body
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or body[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        raise ParseError(url, "UTF-16/32 documents with entity declarations are not accepted")
    prolog, rest = body[:end], body[end:]
    budget = 0
    kept = []

    def judge(decl: re.Match[bytes]) -> bytes:
        nonlocal budget
        param, name, value = decl.group(1), decl.group(2), decl.group(3)
        v = _SAFE_VALUE.match(value)
        if param or v is None:  # parameter, external (SYSTEM/PUBLIC) or nested entities: dropped
            return b""
        uses = rest.count(b"&" + name + b";")
        budget += len(v.group(2)) * uses
        kept.append(name)
        return decl.group(0)

    prolog = _ENTITY_DECL.sub(judge, prolog)
    if budget > ENTITY_BUDGET:
        raise ParseError(url, f"entity expansion would add {budget:,} bytes (limit {ENTITY_BUDGET:,})")
    return prolog + rest


def _entry_time(entry, fetched: datetime) -> datetime:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        st = entry.get(key)
        if st:
            try:
                dt = datetime.fromtimestamp(calendar.timegm(st), UTC)
            except (OverflowError, ValueError):
                continue
            return fetched if dt > fetched + FUTURE_TOLERANCE else dt
    return fetched


def _content(entry) -> str:
    best, detail = "", None
    for c in entry.get("content") or ():
        v = c.get("value") or ""
        if len(v) > len(best):
            best, detail = v, c
    return plain_or_html(best, detail)


def parse_feed(body: bytes, headers: dict[str, str], url: str, source: str,
               fetched: datetime) -> ParsedFeed:
    """Parse one feed body; raises ParseError when nothing can be recovered."""
    body = defuse_entities(body, url)
    d = feedparser.parse(body, response_headers=headers, sanitize_html=False,
                         resolve_relative_uris=False)
    warnings = []
    if d.bozo:
        exc = d.get("bozo_exception")
        warnings.append(f"{type(exc).__name__}: {exc}" if exc else "malformed feed")
    if not d.entries and not d.get("version"):
        reason = warnings[0] if warnings else "no RSS or Atom document found"
        raise ParseError(url, f"not a feed ({reason})")
    feed = d.feed
    language = (feed.get("language") or "").split("-")[0].lower()
    articles = []
    for entry in d.entries:
        try:
            articles.append(_article(entry, url, source, fetched))
        except Exception as e:  # one bad entry never costs the others
            warnings.append(f"entry {entry.get('id') or entry.get('link') or '?'} skipped: {e}")
    ttl = feed.get("ttl")
    return ParsedFeed(
        articles=tuple(articles), warnings=tuple(warnings), encoding=d.get("encoding") or "",
        version=d.get("version") or "", title=html_to_text(feed.get("title") or ""),
        language=language, ttl_minutes=int(ttl) if ttl and str(ttl).isdigit() else None)


def _article(entry, url: str, source: str, fetched: datetime) -> Article:
    title = plain_or_html(entry.get("title") or "", entry.get("title_detail"))
    summary = plain_or_html(entry.get("summary") or "", entry.get("summary_detail"))
    content = _content(entry)
    if content == summary:
        content = ""
    link = (entry.get("link") or "").strip()
    published = _entry_time(entry, fetched)
    if not (title or summary or content or link):
        raise ValueError("entry has no title, text or link")
    return Article(
        id=article_id(entry.get("id") or "", link, title, entry.get("published") or ""),
        feed_url=url, source=source, title=title, summary=summary, content=content,
        link=link, published=published, fetched=fetched,
        language=(entry.get("language") or "").split("-")[0].lower() if entry.get("language") else "",
    )
