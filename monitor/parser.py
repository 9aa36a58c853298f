"""The parse stage: raw feed bytes (+ response headers) → Article records.

The body is decoded with feedparser's own detection and the HTTP headers, so a charset
declared only in Content-Type (windows-1256, ISO-8859-6) decodes correctly; dropping the
headers silently produces mojibake. This module is pure (no I/O) so it can run in a worker
process and be tested on corpus files.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
from feedparser.exceptions import NonXMLContentType
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
# Runs of horizontal space, but not the single plain spaces between words (nothing to replace:
# matching each of those made _tidy 6 % of a parse worker's time).
_SPACES = re.compile(r"[\t\u00a0\u200b][ \t\u00a0\u200b]*| [ \t\u00a0\u200b]+")
_C0 = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")  # and lone surrogates
_DROP = ("script", "style", "noscript", "iframe", "noembed", "noframes", "template", "object")
_BLANKS = re.compile(r"\s*\n\s*")
_RAWTEXT = re.compile(r"<(?:plaintext|xmp|textarea)\b", re.IGNORECASE)
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
        port = p.port
    except ValueError:  # unsplittable, or a port that is not a number ("http://h:00org/")
        return url.strip()
    query = urlencode([(k, v) for k, v in parse_qsl(p.query, keep_blank_values=True)
                       if not _TRACKING.match(k)])
    netloc = (p.hostname or "").lower()
    if port and not ((p.scheme == "http" and port == 80) or (p.scheme == "https" and port == 443)):
        netloc += f":{port}"
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
        if _RAWTEXT.search(value):
            # An unclosed <plaintext>, <xmp> or <textarea> swallows the rest of the
            # document as text — with fragment_fromstring that includes its "</body></html>".
            root = lxml.html.document_fromstring("<html><body><div>" + value).find("body")
        else:
            root = lxml.html.fragment_fromstring(value, create_parent="div")
    except (etree.ParserError, ValueError):
        return _tidy(html.unescape(re.sub(r"<[^>]*>", " ", value)))
    for bad in list(root.iter(*_DROP)):
        bad.drop_tree()
    for el in root.iter(*_BLOCK):
        el.tail = "\n" + (el.tail or "")
    return _tidy(root.text_content())


def _tidy(text: str) -> str:
    """Control characters out, runs of horizontal space to one, blank lines out, ends stripped.

    The same result as `_tidy_re` (tests compare them). Regular expressions cost ~10 ns per
    character on Arabic text, 0.1-0.2 ms per article; most lines are printable (no control
    characters, no whitespace but " "), which str.isprintable() tells in C, and then only
    double spaces and the line ends need work."""
    lines = text.split("\n")
    out = []
    for line in lines:
        if not line.isprintable():
            return _tidy_re(text)
        if "  " in line:
            line = _SPACES.sub(" ", line)
        line = line.strip(" ")
        if line:
            out.append(line)
    return "\n".join(out)


def _tidy_re(text: str) -> str:
    """The definition _tidy keeps to (tests compare the two)."""
    return _BLANKS.sub("\n", _SPACES.sub(" ", _C0.sub("", text))).strip()


def plain_or_html(value: str, detail: dict | None) -> str:
    """Text of a feed field: markup removed only where the feed says the value is markup
    (an Atom type="text" title may legitimately read "the <blink> tag")."""
    kind = (detail or {}).get("type", "text/html")
    if kind == "text/plain":
        return _tidy(value)
    return html_to_text(value)


# ---- decoding and XML entity defences ----
# feedparser re-admits internal DTD entities with plain-text values and, when expat refuses a
# document, its fallback parser expands them without any limit (a 19 KB feed became 10-million-
# character fields). The body is first decoded exactly as feedparser would (BOM, XML
# declaration, HTTP charset, RFC 3023 rules) so the defence reads text, not bytes in an
# encoding it cannot see (UTF-16 without BOM, EBCDIC). The prolog is then rebuilt from what
# an XML parser would read — comments, PIs and everything in the internal subset except
# internal general entities dropped — and the total expansion of those entities is bounded.
ENTITY_BUDGET = 1_000_000  # bytes that entity references may add to a document
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*>")
_DOCTYPE_SCAN = re.compile(rb"<!--|<\?|['\"\[\]>]")
_ENTITY_DECL = re.compile(rb"""<!ENTITY\s+([^\s%"'<>&;]+)\s+(?:"([^"]*)"|'([^']*)')\s*>""", re.I)
_DOCTYPE_HEAD = re.compile(rb"""^\s+[^\s\[>"'<]+"""
                           rb"""(?:\s+(?:PUBLIC\s+("[^"<]*"|'[^'<]*')\s+|SYSTEM\s+)("[^"<]*"|'[^'<]*'))?\s*$""")
_HAS_ENTITY = re.compile(rb"<!ENTITY", re.I)
_NAME_START = re.compile(rb"[A-Za-z_:\x80-\xff]")
# Counted with or without the ';': feedparser's fallback (sgmllib) also expands "&name ".
_ENTITY_REF = re.compile(rb"&([^\s&;#<>\"'=/]+)")
_BIG_CHARREF = re.compile(rb"&#(?:[xX]0*([0-9a-fA-F]{4,})|0*([0-9]{5,}))")


_BOMS = ((codecs.BOM_UTF32_BE, "utf-32be"), (codecs.BOM_UTF32_LE, "utf-32le"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_BE, "utf-16be"), (codecs.BOM_UTF16_LE, "utf-16le"))


def _charset_utf8(headers: dict[str, str]) -> dict[str, str]:
    """The same headers, with the Content-Type's charset saying what the body now is."""
    ct = headers.get("content-type")
    if ct is None:
        return headers
    media = ct.split(";", 1)[0].strip() or "application/xml"
    return {**headers, "content-type": f"{media}; charset=utf-8"}


def decode_body(body: bytes, headers: dict[str, str]) -> tuple[bytes, str, str]:
    """The body as UTF-8 with an XML declaration saying so, the encoding it was read in, and
    feedparser's complaint about the encoding if any (feedparser's own detection)."""
    from feedparser.encodings import convert_to_utf8

    ct = headers.get("content-type")
    plain = headers if ct is None else {**headers, "content-type": ct.split(";", 1)[0]}
    bom = next((enc for mark, enc in _BOMS if body.startswith(mark)), None)
    if bom:  # a byte order mark outranks every declared charset (feedparser lets utf-8 win)
        headers = {**headers, "content-type": f"{(ct or 'application/xml').split(';', 1)[0]}; charset={bom}"}
    # Second try: without the declared encodings, when one of them breaks the decoder (a
    # non-ASCII name, a codec that is not a text encoding).
    for data, hdrs in ((body, headers), (_XML_DECL.sub(b"", body, count=1), plain)):
        result: dict = {}
        try:
            data = convert_to_utf8(hdrs, data, result)
        except Exception:
            continue
        encoding = result.get("encoding") or ""
        if not encoding:  # nothing decoded it: what the fallback parser would do
            data = data.decode("utf-8", "replace").encode("utf-8")
        exc = result.get("bozo_exception")
        return data, encoding, f"{type(exc).__name__}: {exc}" if exc else ""
    text = body.decode("utf-8", "replace").lstrip("\ufeff")
    text = "<?xml version='1.0' encoding='utf-8'?>\n" + re.sub(r"^\s*<\?xml[^>]*>", "", text)
    return text.encode("utf-8"), "utf-8", "the declared encoding is unusable; read as UTF-8"


def _doctype_end(data: bytes, start: int) -> tuple[int, int, int]:
    """End of the DOCTYPE at `start`, and the bounds of its internal subset (-1 when none)."""
    pos, sub_start, sub_end = start + 9, -1, -1
    while m := _DOCTYPE_SCAN.search(data, pos):
        tok, pos = m.group(), m.end()
        if tok == b"<!--":
            pos = _find_or_end(data, b"-->", pos) + 3
        elif tok == b"<?":
            pos = _find_or_end(data, b"?>", pos) + 2
        elif tok in (b"'", b'"'):
            pos = _find_or_end(data, tok, pos) + 1
        elif tok == b"[" and sub_start < 0:
            sub_start = pos
        elif tok == b"]" and sub_start >= 0 and sub_end < 0:
            sub_end = pos - 1
        elif tok == b">" and (sub_start < 0 or sub_end >= 0):
            return pos, sub_start, sub_end
    return len(data), sub_start, sub_end


def _find_or_end(data: bytes, what: bytes, pos: int) -> int:
    i = data.find(what, pos)
    return len(data) if i < 0 else i


def _expansion(values: dict[bytes, bytes], url: str) -> dict[bytes, int]:
    """Bytes each entity expands to, nested references included; recursion is refused."""
    sizes: dict[bytes, int] = {}

    def size(name: bytes, path: tuple[bytes, ...]) -> int:
        if name in sizes:
            return sizes[name]
        if name in path:
            raise ParseError(url, f"entity {name.decode(errors='replace')!r} refers to itself")
        value = values[name]
        n = len(value)
        for ref in _ENTITY_REF.findall(value):
            if ref in values:
                n += size(ref, (*path, name)) - len(ref) - 2
        sizes[name] = min(n, 1 << 62)
        return sizes[name]

    for name in values:
        size(name, ())
    return sizes


def defuse_entities(data: bytes, url: str) -> bytes:
    """Rebuild the prolog of a UTF-8 document so no parser can expand more than ENTITY_BUDGET.

    Kept: the XML declaration, text, and each DOCTYPE reduced to its name, external id and
    internal general entities. Dropped: comments and PIs before the root (so nothing in them
    can hide a DOCTYPE from feedparser's own prolog handling), parameter and external
    entities, and all other declarations."""
    if not _HAS_ENTITY.search(data):
        return data
    decl = _XML_DECL.match(data)
    pos = decl.end() if decl else 0
    out = [decl.group().lstrip()] if decl else []
    while True:
        lt = data.find(b"<", pos)
        if lt < 0:
            out.append(data[pos:])
            pos = len(data)
            break
        out.append(data[pos:lt])
        if data.startswith(b"<!--", lt):
            pos = _find_or_end(data, b"-->", lt + 4) + 3
        elif data.startswith(b"<?", lt):
            pos = _find_or_end(data, b"?>", lt + 2) + 2
        elif data[lt:lt + 9].upper() == b"<!DOCTYPE":
            pos, sub_start, sub_end = _doctype_end(data, lt)
            head_end = sub_start - 1 if sub_start >= 0 else pos - 1
            out.append(_safe_doctype(data[lt + 9:head_end], data[sub_start:sub_end] if sub_start >= 0 else b""))
        elif data.startswith(b"<!", lt):
            pos = _find_or_end(data, b">", lt) + 1
        elif _NAME_START.match(data, lt + 1):
            break  # the root element
        else:  # a stray "<": text, as far as the prolog goes
            out.append(b"<")
            pos = lt + 1
    doc = b"".join(out) + data[pos:]
    # Declarations anywhere count, not only in the prolog as rebuilt: a parser that reads the
    # document differently (feedparser's fallback) must not find an unbounded one either.
    values: dict[bytes, bytes] = {}
    for m in _ENTITY_DECL.finditer(doc):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if len(value) >= len(values.get(m.group(1), b"")):  # parsers differ on which one wins
            values[m.group(1)] = value
    if values:
        sizes = _expansion(values, url)
        uses: dict[bytes, int] = {}
        for name in _ENTITY_REF.findall(doc):
            if name in sizes:
                uses[name] = uses.get(name, 0) + 1
        total = sum(sizes[n] * k for n, k in uses.items())
        if total > ENTITY_BUDGET:
            raise ParseError(url, f"entity expansion would add {total:,} bytes (limit {ENTITY_BUDGET:,})")
    return doc


def _safe_doctype(head: bytes, subset: bytes) -> bytes:
    m = _DOCTYPE_HEAD.match(head) if len(head) < 2000 else None
    head = head.strip() if m else re.sub(rb"[^\w.:-]", b"", (head.split() or [b""])[0]) or b"feed"
    decls = [m.group() for m in _ENTITY_DECL.finditer(subset)]
    if not decls:
        return b"\n<!DOCTYPE " + head + b">"
    # On lines of their own: feedparser only finds DOCTYPE and ENTITY at the start of a line.
    return b"\n<!DOCTYPE " + head + b" [\n" + b"\n".join(decls) + b"\n]>"


def _charref(m: re.Match[bytes]) -> bytes:
    digits = m.group(1) or m.group(2)
    if len(digits) <= 7:
        c = int(digits, 16 if m.group(1) else 10)
        if c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF:
            return m.group()
    return b"&#xFFFD"


def fix_charrefs(data: bytes) -> bytes:
    """Character references to no character (beyond U+10FFFF, surrogates) become U+FFFD:
    feedparser's fallback parser calls chr() on them and crashes."""
    return _BIG_CHARREF.sub(_charref, data)


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
    headers = {k.lower(): v for k, v in headers.items()}
    data, encoding, problem = decode_body(body, headers)
    data = fix_charrefs(defuse_entities(data, url))
    if FAST_PATH and not problem and "content-location" not in headers and "content-language" not in headers:
        try:
            version, entries, feed = _fast_feed(data)
        except _HandOff:
            pass
        else:
            return _assemble(version, entries, feed, [], encoding, url, source, fetched)
    try:
        # A stream, never bytes: feedparser opens a bytes argument as a file name if it can.
        d = feedparser.parse(io.BytesIO(data), response_headers=_charset_utf8(headers),
                             sanitize_html=False, resolve_relative_uris=False)
    except MemoryError:
        raise  # the caller knows the memory cap and says so
    except Exception as e:  # feedparser's own bugs on odd input (KeyError 'tags', …)
        raise ParseError(url, f"the feed parser failed: {type(e).__name__}: {e}") from None
    warnings = [problem] if problem else []
    if d.bozo:
        exc = d.get("bozo_exception")
        if not (problem and isinstance(exc, NonXMLContentType)):  # already said, with the real charset
            warnings.append(f"{type(exc).__name__}: {exc}" if exc else "malformed feed")
    if not d.entries and not d.get("version"):
        reason = warnings[-1] if warnings else "no RSS or Atom document found"
        raise ParseError(url, f"not a feed ({reason})")
    return _assemble(d.get("version") or "", d.entries, d.feed, warnings, encoding, url, source, fetched)


def _assemble(version: str, entries, feed, warnings: list[str], encoding: str, url: str,
              source: str, fetched: datetime) -> ParsedFeed:
    """Articles and feed fields from entries as feedparser shapes them (either path)."""
    articles = []
    for entry in entries:
        try:
            articles.append(_article(entry, url, source, fetched, warnings))
        except Exception as e:  # one bad entry never costs the others
            warnings.append(f"entry {_entry_name(entry)} skipped: {type(e).__name__}: {e}"[:500])
    title = _capped(html_to_text(feed.get("title") or ""), "feed title", MAX_TITLE, warnings)
    if len(warnings) > MAX_WARNINGS:  # each is logged: a broken feed must not flood the log
        warnings[MAX_WARNINGS - 1:] = [f"… and {len(warnings) - MAX_WARNINGS + 1:,} more problems"]
    return ParsedFeed(
        articles=tuple(articles), warnings=tuple(warnings), encoding=encoding,
        version=version, title=title,
        language=_language(feed.get("language")), ttl_minutes=_ttl(feed.get("ttl")))


# Caps on what one entry can store: a hostile or broken feed must not become a 50-million-
# character article. Truncation is reported as a warning.
MAX_TITLE = 2_000
MAX_BODY = 1_000_000  # each of summary and content
MAX_LINK = 4_096
MAX_WARNINGS = 20
_TTL = re.compile(r"\s*([0-9]{1,7})\s*")


def _ttl(value) -> int | None:
    """Minutes from <ttl>, only when it is plain ASCII digits of sane length (not '²')."""
    m = _TTL.fullmatch(str(value or ""))
    return (int(m.group(1)) or None) if m else None


def _language(value) -> str:
    code = str(value or "").split("-")[0].strip().lower()
    return code if len(code) <= 8 and code.isascii() and code.isalpha() else ""


def _entry_name(entry) -> str:
    return str(entry.get("id") or entry.get("link") or "?")[:200]


def _capped(value: str, what: str, limit: int, warnings: list[str]) -> str:
    if len(value) <= limit:
        return value
    warnings.append(f"{what} truncated from {len(value):,} to {limit:,} characters")
    return value[:limit]


def _article(entry, url: str, source: str, fetched: datetime, warnings: list[str]) -> Article:
    name = _entry_name(entry)
    title = _capped(plain_or_html(entry.get("title") or "", entry.get("title_detail")),
                    f"entry {name}: title", MAX_TITLE, warnings)
    summary = _capped(plain_or_html(entry.get("summary") or "", entry.get("summary_detail")),
                      f"entry {name}: summary", MAX_BODY, warnings)
    content = _capped(_content(entry), f"entry {name}: content", MAX_BODY, warnings)
    if content == summary:
        content = ""
    link = _C0.sub("", str(entry.get("link") or "")).strip()
    if len(link) > MAX_LINK:  # a cut link leads somewhere else: better none
        warnings.append(f"entry {name}: link of {len(link):,} characters dropped (limit {MAX_LINK:,})")
        link = ""
    published = _entry_time(entry, fetched)
    if not (title or summary or content or link):
        raise ValueError("entry has no title, text or link")
    return Article(
        id=article_id(str(entry.get("id") or ""), link, title, str(entry.get("published") or "")),
        feed_url=url, source=source, title=title, summary=summary, content=content,
        link=link, published=published, fetched=fetched, language=_language(entry.get("language")),
    )


# ---- the fast path: lxml for well-formed, plain RSS 2.0, Atom 1.0 and RSS 1.0 (RDF) ----
# feedparser costs ~0.6 ms per item; lxml reads the same item in ~0.05 ms. The fast path
# reproduces feedparser's result for the shapes it knows exactly (same ids, titles, text,
# links, dates: tests/test_fastpath.py runs every corpus through both) and hands the
# document to feedparser for anything else — malformed XML, a DTD, xml:base or xml:lang,
# unknown elements inside an entry, child elements in a text field, duplicate fields.
# Handing off is always safe: it only costs the time the fast path was meant to save.

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_DC = "{http://purl.org/dc/elements/1.1/}"
_MEDIA = "{http://search.yahoo.com/mrss/}"
# Entry children that feedparser reads but that never reach an Article field.
# (Not media:title or media:description: feedparser reads those as the title and summary;
# nothing in a namespace it does not know either: it dispatches on the document's prefix.)
_RSS_IGNORED = frozenset(("author", "category", "comments", "enclosure", _DC + "creator",
                          _DC + "subject", _MEDIA + "credit", "{http://wellformedweb.org/CommentAPI/}commentRss",
                          "{http://wellformedweb.org/CommentAPI/}comment",
                          "{http://purl.org/rss/1.0/modules/slash/}comments",
                          "{http://rssnamespace.org/feedburner/ext/1.0}origLink"))
_ATOM_IGNORED = frozenset(_ATOM + t for t in ("author", "contributor", "category", "rights"))
_ATOM_PERSON = frozenset(_ATOM + t for t in ("name", "email", "uri"))
_EMPTY_OK = frozenset((_MEDIA + "content", _MEDIA + "thumbnail"))  # only when empty
_ATOM_TEXT_TYPES = {"text": "text/plain", "html": "text/html", "text/plain": "text/plain",
                    "text/html": "text/html"}
_NO_DOC = (b"<!DOCTYPE", b"<!doctype", b"xml:base")
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_CP1252_RANGE = re.compile("[\x80-\x9f]")
_AMP_REF = re.compile("&([A-Za-z0-9_]+);")
_FAST_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                               remove_comments=True, remove_pis=True, recover=False)
FAST_PATH = True  # tests switch it off to compare with feedparser alone


class _HandOff(Exception):
    """The fast path is unsure of this document: feedparser reads it."""


def _fp_text(el, plain: bool = False) -> str:
    """An element's text as feedparser's pop() leaves it (strict parser, no sanitizing)."""
    if len(el):
        raise _HandOff  # markup inside a text field: feedparser rebuilds it, we do not
    out = (el.text or "").strip()
    try:  # feedparser's repair of UTF-8 read as Latin-1
        out = out.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    if _CP1252_RANGE.search(out):
        from feedparser.html import _cp1252

        out = out.translate(_cp1252)
    return out


def _fp_type_guess(value: str) -> str:
    """RSS's nominally plain-text fields, as feedparser guesses them."""
    from feedparser.mixin import _FeedParserMixin

    return "text/html" if _FeedParserMixin.looks_like_html(value) else "text/plain"


def _fp_date(value: str):
    from feedparser.datetimes import _parse_date

    return _parse_date(value) if value else None


def _fp_uri(value: str) -> str:
    from feedparser.urls import _urljoin

    return _urljoin("", value) if value else value


def _attrs(el) -> dict[str, str]:
    out = {}
    for k, v in el.attrib.items():
        k = k.lower()
        out[k] = v.lower() if k in ("rel", "type") else v
    return out


def _once(seen: set, tag: str) -> None:
    if tag in seen:
        raise _HandOff  # a second title/description/…: feedparser's rules depend on order
    seen.add(tag)


def _rss_entry(item, rdf: bool) -> dict:
    ns = _RSS1 if rdf else ""
    entry: dict = {}
    seen: set[str] = set()
    attrs = dict(item.attrib)
    about = attrs.pop(_RDF + "about", None) if rdf else None
    if attrs:
        raise _HandOff
    if about:
        entry["id"] = about
    guid_link = None
    for child in item:
        tag = child.tag
        if tag == ns + "title":
            _once(seen, tag)
            if child.attrib:
                raise _HandOff
            v = _fp_text(child)
            if v:
                entry["title"] = v
                entry["title_detail"] = {"type": _fp_type_guess(v)}
        elif tag == ns + "description":
            _once(seen, tag)
            if child.attrib:
                raise _HandOff
            entry["summary"] = _fp_text(child)
            entry["summary_detail"] = {"type": "text/html"}
        elif tag == _CONTENT:
            _once(seen, tag)
            if child.attrib:
                raise _HandOff
            entry["content"] = [{"type": "text/html", "value": _fp_text(child)}]
        elif tag == ns + "link":
            _once(seen, tag)
            if child.attrib:
                raise _HandOff
            v = _fp_uri(_fp_text(child)).replace("&amp;", "&")
            entry["link"] = _AMP_REF.sub(r"&\g<1>", v)
        elif tag == "guid" and not rdf:
            _once(seen, tag)
            a = _attrs(child)
            if set(a) - {"ispermalink"}:
                raise _HandOff
            is_link = a.get("ispermalink", "true") == "true"
            v = _fp_text(child)
            entry["id"] = _fp_uri(v) if is_link else v
            if is_link:
                guid_link = entry["id"]
        elif tag == "pubDate" and not rdf:
            _once(seen, tag)
            entry["published"] = v = _fp_text(child)
            entry["published_parsed"] = _fp_date(v)
        elif tag == _DC + "date":
            _once(seen, tag)
            entry["updated"] = v = _fp_text(child)
            entry["updated_parsed"] = _fp_date(v)
        elif (tag in _RSS_IGNORED or (rdf and tag in (ns + "author", ns + "category"))) and not len(child):
            continue
        elif tag in _EMPTY_OK and not len(child) and not (child.text or "").strip():
            continue
        else:
            raise _HandOff
    if "link" not in entry and guid_link is not None:
        entry["link"] = guid_link
    _summary_from_content(entry)
    return entry


def _summary_from_content(entry: dict) -> None:
    """feedparser copies text or HTML content into an absent summary (without its type)."""
    if "summary" not in entry and entry.get("content"):
        c = entry["content"][0]
        if c["type"] in ("text/plain", "text/html", "application/xhtml+xml"):
            entry["summary"] = c["value"]


def _atom_typed(child) -> tuple[str, dict]:
    a = _attrs(child)
    if set(a) - {"type"}:
        raise _HandOff
    kind = _ATOM_TEXT_TYPES.get(a.get("type", "text"))
    if kind is None:  # xhtml, base64-encoded media types, …
        raise _HandOff
    return _fp_text(child), {"type": kind}


def _atom_entry(item) -> dict:
    if item.attrib:
        raise _HandOff
    entry: dict = {}
    seen: set[str] = set()
    alternate = id_link = None
    for child in item:
        tag = child.tag
        if tag == _ATOM + "title":
            _once(seen, tag)
            v, detail = _atom_typed(child)
            if v:
                entry["title"], entry["title_detail"] = v, detail
        elif tag == _ATOM + "summary":
            _once(seen, tag)
            entry["summary"], entry["summary_detail"] = _atom_typed(child)
        elif tag == _ATOM + "content":
            _once(seen, tag)
            v, detail = _atom_typed(child)
            entry["content"] = [{**detail, "value": v}]
        elif tag == _ATOM + "link":
            a = _attrs(child)
            if "href" not in a or len(child) or (child.text or "").strip():
                raise _HandOff
            if a.get("rel", "alternate") == "alternate" and a.get("type", "text/html") in (
                    "text/html", "application/xhtml+xml"):
                alternate = _fp_uri(a["href"])
        elif tag == _ATOM + "id":
            _once(seen, tag)
            if child.attrib:
                raise _HandOff
            entry["id"] = id_link = _fp_uri(_fp_text(child))
        elif tag in (_ATOM + "published", _ATOM + "updated"):
            _once(seen, tag)
            key = tag[len(_ATOM):]
            entry[key] = v = _fp_text(child)
            entry[key + "_parsed"] = _fp_date(v)
        elif tag in _ATOM_IGNORED and all(c.tag in _ATOM_PERSON for c in child):
            continue
        elif tag in _EMPTY_OK and not len(child) and not (child.text or "").strip():
            continue
        else:
            raise _HandOff
    if alternate is not None:
        entry["link"] = alternate
    elif id_link:
        entry["link"] = id_link
    _summary_from_content(entry)
    return entry


def _fast_feed(data: bytes) -> tuple[str, list[dict], dict]:
    """(version, entries, feed fields) read by lxml; _HandOff when unsure."""
    if any(marker in data for marker in _NO_DOC):
        raise _HandOff
    try:
        root = etree.fromstring(data, _FAST_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        raise _HandOff from None
    feed: dict = {}
    lang = data.count(b"xml:lang")
    if lang:  # feedparser reads it as the feed's language on the root element only
        if lang > 1 or root.get(_XML_LANG) is None:
            raise _HandOff
        feed["language"] = root.get(_XML_LANG).replace("_", "-")
    if root.tag == "rss" and root.get("version") == "2.0":
        channels = root.findall("channel")
        if len(channels) != 1 or len(root) != 1:
            raise _HandOff
        channel = channels[0]
        _rss_channel(channel, feed, "")
        return "rss20", [_rss_entry(el, False) for el in channel if el.tag == "item"], feed
    if root.tag == _RDF + "RDF":
        channels = root.findall(_RSS1 + "channel")
        # feedparser takes the version from the first known namespace declared: an RDF
        # document declaring Atom's is "atom10" to it
        if len(channels) != 1 or _ATOM[1:-1].encode() in data:
            raise _HandOff
        _rss_channel(channels[0], feed, _RSS1)
        return "rss10", [_rss_entry(i, True) for i in root.iterfind(_RSS1 + "item")], feed
    if root.tag == _ATOM + "feed":
        if any(not el.tag.startswith(_ATOM) or el.tag == _ATOM + "item" for el in root):
            raise _HandOff  # feedparser reads other vocabularies' items and titles here too
        titles = root.findall(_ATOM + "title")
        if len(titles) > 1:
            raise _HandOff
        if titles:
            feed["title"] = _atom_typed(titles[0])[0]
        return "atom10", [_atom_entry(e) for e in root.iterfind(_ATOM + "entry")], feed
    raise _HandOff


def _rss_channel(channel, feed: dict, ns: str) -> None:
    for el in channel:
        tag = el.tag
        if tag.startswith(_DC) or (tag.startswith("{") and not (ns and tag.startswith(ns))
                                   and tag.rpartition("}")[2] in ("title", "language", "ttl", "item")):
            raise _HandOff  # dc:title, dc:language and kin: feedparser reads them as the feed's
    for name in ("title", "language", "ttl"):
        found = channel.findall(ns + name)
        if len(found) > 1:
            raise _HandOff
        if found:
            feed[name] = _fp_text(found[0])
