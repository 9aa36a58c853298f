"""The lxml fast path against feedparser on every corpus under ../shared/data.

Each document is parsed twice: once as Raqib does (fast path first, feedparser when the fast
path hands off) and once by feedparser alone. The result must be the same ParsedFeed —
Articles (ids, titles, text, links, dates) and feed fields — or the fast path must have handed
the document off. The hand-off rate is printed (pytest -s) for the report."""

from __future__ import annotations

import gzip
import html
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor import parser
from monitor.errors import ParseError
from monitor.parser import _fast_feed, _HandOff, parse_feed
from tests.corpus import DATA, ant_item, need, rss, topical_docs
from tests.corpus_serving import HOSTILE, feedparser_files, real_feed_files

FETCHED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def both(body: bytes, headers: dict[str, str]) -> tuple[object, object, bool]:
    """(Raqib's result, feedparser's result, whether the fast path took the document)."""
    def run():
        try:
            return parse_feed(body, headers, "http://127.0.0.1/f", "src", FETCHED)
        except ParseError as e:
            return f"ParseError: {e}"

    fast = run()
    parser.FAST_PATH = False
    try:
        slow = run()
    finally:
        parser.FAST_PATH = True
    lowered = {k.lower(): v for k, v in headers.items()}
    data, _, problem = parser.decode_body(body, lowered)
    try:
        _fast_feed(parser.fix_charrefs(parser.defuse_entities(data, "u")))
        took = not problem and "content-location" not in lowered and "content-language" not in lowered
    except (_HandOff, ParseError):
        took = False
    return fast, slow, took


def _check(files: list[tuple[str, bytes, dict[str, str]]]) -> tuple[int, int]:
    differ, took = [], 0
    for key, body, headers in files:
        fast, slow, fast_took = both(body, headers)
        took += fast_took
        if fast != slow:
            differ.append(key)
    assert not differ, f"{len(differ)} documents differ between the paths: {differ[:20]}"
    return took, len(files)


def _read(path: Path, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    body = path.read_bytes()
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body, {k: v for k, v in headers.items() if k.lower() != "content-encoding"}


def _report(name: str, took: int, total: int) -> None:
    print(f"\n{name}: fast path took {took} of {total}; handed off {total - took} "
          f"({(total - took) / max(total, 1):.0%})")


def test_feedparser_corpus_same_or_handed_off():
    need(DATA / "feedparser-tests")
    files = [(f.key, *_read(f.path, f.headers)) for f in feedparser_files()]
    took, total = _check(files)
    _report("feedparser-tests", took, total)
    assert total > 100


def test_real_feed_corpora_same_or_handed_off():
    files = [(f.key, *_read(f.path, f.headers)) for f in real_feed_files()]
    if not files:
        pytest.skip("real-feed corpora not present")
    took, total = _check(files)
    _report("miniflux/node-feedparser/picofeed/rss-parser", took, total)
    assert took > 0  # the fast path is exercised, not handing everything off


def test_scraped_feeds_same_or_handed_off():
    paths = sorted(need(DATA / "gitscrape-en-feeds").glob("*.xml"))
    files = [(p.name, *_read(p, {"Content-Type": "application/rss+xml"})) for p in paths]
    took, total = _check(files)
    _report("gitscrape-en-feeds", took, total)
    assert took > 0


def test_hostile_xml_same_or_handed_off():
    paths = sorted(p for p in need(HOSTILE).iterdir() if p.is_file())
    files = [(p.name, *_read(p, {"Content-Type": "application/xml"})) for p in paths]
    took, total = _check(files)
    _report("hostile-xml", took, total)
    assert took == 0  # DTDs, entities, external references: never the fast path's


def test_ant_wrapped_feeds_take_the_fast_path_with_the_same_articles():
    docs = topical_docs()[:400]
    feeds = [rss([ant_item(d) for d in docs[i:i + 50]]) for i in range(0, len(docs), 50)]
    feeds.append(rss([ant_item(d, full_text=False) for d in docs[:50]], language="ar-EG"))
    files = [(f"ant-{i}", body, {"Content-Type": "application/rss+xml"}) for i, body in enumerate(feeds)]
    took, total = _check(files)
    assert took == total  # the shape Raqib polls most: never handed off
    fast, _, _ = both(feeds[0], {})
    assert len(fast.articles) == 50 and all(a.title and a.content for a in fast.articles)


def test_markup_in_a_text_field_is_handed_off():
    doc = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
           b'<title>a</title><description><p>raw <b>markup</b></p></description></item></channel></rss>')
    with pytest.raises(_HandOff):
        _fast_feed(doc)
    fast, slow, took = both(doc, {})
    assert fast == slow and not took
    assert "markup" in fast.articles[0].summary


def test_dtd_is_handed_off_and_entities_stay_defused():
    doc = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e "x">]><rss version="2.0"><channel>'
           b'<title>t</title><item><title>&e;</title></item></channel></rss>')
    with pytest.raises(_HandOff):
        _fast_feed(doc)


def test_rss_atom_and_rdf_shapes_match_feedparser():
    rss_doc = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T &amp; co</title>'
               b'<language>ar-SA</language><ttl>30</ttl><item><title>5 &lt; 6 &amp;amp; 7</title>'
               b'<guid>http://e.org/1?utm_source=x</guid><pubDate>Mon, 30 Nov 2026 10:00:00 +0300</pubDate>'
               b'<description>&lt;p&gt;one&lt;/p&gt;\t\t two</description></item></channel></rss>')
    atom_doc = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title type="html">'
                b'A &lt;b&gt;B&lt;/b&gt;</title><entry><title>x &lt;y&gt;</title><id>urn:1</id>'
                b'<link href="http://e.org/a"/><link rel="alternate" href="http://e.org/b"/>'
                b'<updated>2026-11-30T09:00:00Z</updated><content type="html">&lt;p&gt;c&lt;/p&gt;</content>'
                b'</entry></feed>')
    rdf_doc = (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
               b'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
               b'<channel rdf:about="http://e.org/"><title>R</title></channel>'
               b'<item rdf:about="http://e.org/r1"><title>r1</title><link>http://e.org/r1</link>'
               b'<dc:date>2026-11-29T08:00:00Z</dc:date></item></rdf:RDF>')
    for doc, version in ((rss_doc, "rss20"), (atom_doc, "atom10"), (rdf_doc, "rss10")):
        fast, slow, took = both(doc, {"Content-Type": "application/xml"})
        assert took, version
        assert fast == slow, version
        assert fast.version == version and fast.articles
    fast, _, _ = both(rss_doc, {})
    assert fast.language == "ar" and fast.ttl_minutes == 30 and fast.title == "T & co"
    assert fast.articles[0].link == "http://e.org/1?utm_source=x"
    assert fast.articles[0].summary == "one\ntwo"


def test_tidy_keeps_single_spaces_and_squeezes_runs():
    assert parser._tidy("a b  c\t d\u00a0e\u200b\u200bf \n\n g") == "a b c d e f\ng"
    assert parser._tidy(html.unescape("x&nbsp; &nbsp;y")) == "x y"


from hypothesis import given, settings, strategies as st  # noqa: E402

_WS_ALPHABET = st.sampled_from(list(" \n\t\r\u00a0\u200b\u200f\u2028\x0b\x0c\x1f\x85\u3000ab\u0628\u0627"))


@settings(max_examples=400, deadline=None)
@given(st.text(_WS_ALPHABET, max_size=40))
def test_tidy_is_its_regular_expression_definition(text):
    assert parser._tidy(text) == parser._tidy_re(text)


def test_tidy_on_real_articles_is_its_definition():
    for d in topical_docs()[:200]:
        for value in (d.text, d.abstract, d.title):
            assert parser._tidy(value) == parser._tidy_re(value)


def _jawhara_docs(limit: int) -> list:
    import tarfile

    from tests.corpus import parse_ant

    archive = need(DATA / "antcorpus-jawhara" / "antcorpus.data.v1.1.tar.xz")
    out = []
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".txt"):
                f = tar.extractfile(member)
                if f is not None:
                    out.append(parse_ant(f.read().decode("utf-8", "replace")))
            if len(out) >= limit:
                break
    return out


def _atom(docs) -> bytes:
    entries = "".join(
        f'<entry><title>{html.escape(d.title)}</title><id>urn:ant:{html.escape(d.docno)}</id>'
        f'<link href="{html.escape(d.url)}"/><updated>{html.escape(d.time)}</updated>'
        f'<summary type="html">{html.escape(d.abstract)}</summary>'
        f'<content type="html">{html.escape(d.text)}</content></entry>' for d in docs)
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Jawhara</title>{entries}</feed>").encode()


def test_jawhara_wrapped_as_rss_and_atom_take_the_fast_path_with_the_same_articles():
    docs = _jawhara_docs(300)
    files = [(f"jawhara-rss-{i}", rss([ant_item(d) for d in docs[i:i + 50]]), {}) for i in range(0, 300, 50)]
    files += [(f"jawhara-atom-{i}", _atom(docs[i:i + 50]), {"Content-Type": "application/atom+xml"})
              for i in range(0, 300, 50)]
    took, total = _check(files)
    assert took == total
    fast, _, _ = both(files[-1][1], files[-1][2])
    assert fast.version == "atom10" and len(fast.articles) == 50
    assert all(a.link.startswith("http") and a.content for a in fast.articles)


def test_feed_url_lists_same_or_handed_off():
    paths = sorted(p for p in need(DATA / "feed-url-lists").iterdir() if p.suffix in (".xml", ".opml", ".json"))
    files = [(p.name, *_read(p, {"Content-Type": "application/xml"})) for p in paths]
    took, total = _check(files)
    _report("feed-url-lists", took, total)
    assert took == 0  # OPML and site lists are not feeds
