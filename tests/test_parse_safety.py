"""Hostile and broken feed bodies: the parser either reads them or raises ParseError — never
another exception, never an entity expansion past its budget, whatever the encoding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.errors import ParseError
from monitor.parser import ENTITY_BUDGET, parse_feed
MAX_BODY, MAX_LINK, MAX_TITLE = 1_000_000, 4096, 2000

NOW = datetime(2025, 1, 1, tzinfo=UTC)
RSS = "application/rss+xml"


def parse(body: bytes, content_type: str | None = RSS):
    headers = {"content-type": content_type} if content_type else {}
    return parse_feed(body, headers, "http://feed.test/x", "test", NOW)


def rss(items: str = "<item><title>t</title><link>http://e.org/1</link></item>", channel: str = "") -> str:
    return f'<rss version="2.0"><channel><title>c</title>{channel}{items}</channel></rss>'


# ---- the entity defence reads text, whatever the encoding or the prolog ----

BIG = "B" * 10_000
QUADRATIC = (f'<!DOCTYPE rss [<!ENTITY a "{BIG}">]>',
             rss(f"<item><title>x</title><description>{'&a;' * 500}</description></item>"))
LAUGHS = ('<!DOCTYPE rss [<!ENTITY a "1234567890">' + "".join(
    f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8)) + "]>",
    rss("<item><title>&i;</title></item>"))


def _variants(doctype: str, doc: str) -> dict[str, tuple[bytes, str]]:
    """The same hostile document in the disguises that got past a byte-level check."""
    return {
        "utf-8": (f'<?xml version="1.0"?>{doctype}{doc}'.encode(), RSS),
        # no BOM, no declaration: the charset is only in the HTTP header
        "utf-16be-header-only": (f"{doctype}{doc}".encode("utf-16-be"), "application/xml; charset=utf-16be"),
        "utf-16le-bom": (b"\xff\xfe" + f'<?xml version="1.0"?>{doctype}{doc}'.encode("utf-16-le"), RSS),
        "ebcdic-cp037": (f'<?xml version="1.0" encoding="cp037"?>{doctype}{doc}'.encode("cp037"), "application/xml"),
        "comment-before-doctype": (f'<?xml version="1.0"?><!-- <x -->{doctype}{doc}'.encode(), RSS),
        "pi-before-doctype": (f'<?xml version="1.0"?><?style <x ?>{doctype}{doc}'.encode(), RSS),
    }


@pytest.mark.parametrize("bomb", ["quadratic", "billion-laughs"])
@pytest.mark.parametrize("variant", list(_variants(*QUADRATIC)))
def test_entity_bombs_are_refused_in_every_encoding(bomb, variant):
    body, ctype = _variants(*(QUADRATIC if bomb == "quadratic" else LAUGHS))[variant]
    with pytest.raises(ParseError, match="entity expansion would add"):
        parse(body, ctype)


@pytest.mark.parametrize("variant", list(_variants("", "")))
def test_small_entities_still_expand(variant):
    doctype = '<!DOCTYPE rss [<!ENTITY org "Example Org"><!ENTITY % pe "x">]>'
    body, ctype = _variants(doctype, rss("<item><title>&org; news</title></item>"))[variant]
    p = parse(body, ctype)
    assert [a.title for a in p.articles] == ["Example Org news"]


@pytest.mark.parametrize("body", [
    # feedparser's fallback parser expands "&a " and "&a<" as well as "&a;"
    f'<!DOCTYPE rss [\n<!ENTITY a "{BIG}">\n]>' + rss(f"<item><title>x</title><description>{'&a ' * 500}"
                                                       "</description></item><bad>"),
    # a stray "<" before the DOCTYPE must not end the prolog scan
    f'<?xml version="1.0"?>< \n{QUADRATIC[0]}{QUADRATIC[1]}',
    # declarations after the root element count too
    QUADRATIC[1].replace("<channel>", f"<channel>{QUADRATIC[0]}"),
], ids=["refs-without-semicolon", "stray-lt-before-doctype", "doctype-after-root"])
def test_entity_expansion_is_bounded_however_the_document_is_read(body):
    with pytest.raises(ParseError, match="entity expansion would add"):
        parse(body.encode())


def test_expansion_just_under_the_budget_is_kept():
    value = "x" * 60
    uses = ENTITY_BUDGET // len(value) - 10
    body = (f'<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>'
            + rss(f"<item><title>t</title><description>{'&a;' * uses}</description></item>")).encode()
    (a,) = parse(body).articles
    assert len(a.summary) == len(value) * uses


def test_a_body_that_names_a_local_file_is_not_read(tmp_path):
    f = tmp_path / "local.xml"
    f.write_text(rss("<item><title>from the local disk</title></item>"))
    with pytest.raises(ParseError, match="not a feed"):
        parse(str(f).encode())


# ---- inputs that crashed the parser ----

CRASHERS = {
    "charref-beyond-unicode": rss("<item><title>a &#x110000; b &#99999999999; c</title></item><bad>"),
    "charref-surrogate": rss("<item><title>a &#xD800; b &#55296; c</title></item><bad>"),
    "charref-5000-digits": rss(f"<item><title>a &#{'9' * 5000}; b</title></item><bad>"),
    "tags-keyerror": rss("<item><category>a</item></category><item><title>x</title></item>"),
    "ttl-superscript": rss(channel="<ttl>\u00b2</ttl>"),
    "ttl-5000-digits": rss(channel=f"<ttl>{'9' * 5000}</ttl>"),
    "ttl-arabic-digits": rss(channel="<ttl>\u0666\u0660</ttl>"),
    "language-huge": rss(channel=f"<language>{'x' * 10_000}</language>"),
}
ENCODING_NAMES = ["\u00fcnic\u00f6de", "unicode_escape", "raw_unicode_escape", "punycode", "base64",
                  "rot13", "utf-7", "idna", "a\x00b", "x" * 300]


@pytest.mark.parametrize("name", list(CRASHERS))
def test_former_crashers_parse_or_fail_cleanly(name):
    try:
        p = parse(CRASHERS[name].encode())
    except ParseError as e:
        assert "http://feed.test/x" in str(e)
        return
    assert p.ttl_minutes is None
    assert all("\ufffd" not in a.title or "b" in a.title for a in p.articles)


@pytest.mark.parametrize("enc", ENCODING_NAMES)
def test_any_encoding_name_in_the_declaration(enc):
    decl = f'<?xml version="1.0" encoding="{enc}"?>'
    body = decl.encode("latin-1", "replace") + rss(r"<item><title>\ud800 t \u0041</title></item>").encode()
    try:
        p = parse(body, "application/xml")
    except ParseError:
        return
    for a in p.articles:
        a.title.encode("utf-8")  # no lone surrogates reach the store


def test_any_charset_in_the_header():
    for charset in ENCODING_NAMES:
        try:
            parse(rss().encode(), f"application/xml; charset={charset}")
        except ParseError:
            pass


def test_ttl_read_only_from_plain_digits():
    assert parse(rss(channel="<ttl> 60 </ttl>").encode()).ttl_minutes == 60


# ---- what is stored ----

@pytest.mark.parametrize("tag", ["plaintext", "xmp", "PLAINTEXT", "textarea"])
def test_raw_text_elements_become_text(tag):
    body = rss(f"<item><title>t</title><description>&lt;p&gt;a&lt;/p&gt;&lt;{tag}&gt;hello "
               f"&lt;b&gt;world</description></item>").encode()
    (a,) = parse(body).articles
    assert a.summary == "a\nhello <b>world"


def test_every_stored_field_is_capped():
    long_link = "http://e.org/" + "a" * MAX_LINK
    body = rss(f"<item><title>{'T' * (MAX_TITLE + 500)}</title><link>{long_link}</link>"
               f"<description>{'D' * (MAX_BODY + 10)}</description></item>").encode()
    p = parse(body)
    (a,) = p.articles
    assert len(a.title) == MAX_TITLE and len(a.summary) == MAX_BODY and a.link == ""
    assert any("title truncated" in w for w in p.warnings)
    assert any("summary truncated" in w for w in p.warnings)
    assert any("link of" in w and "dropped" in w for w in p.warnings)


def test_link_with_a_port_that_is_not_a_number():
    from monitor.parser import canonical_link

    assert canonical_link("http://e.org:00org/x") == "http://e.org:00org/x"
    (a,) = parse(rss("<item><title>t</title><link>http://e.org:00org/x</link></item>").encode()).articles
    assert a.link == "http://e.org:00org/x"


def test_warnings_are_bounded():
    from monitor.parser import MAX_WARNINGS

    items = "".join(f"<item><title>{'T' * (MAX_TITLE + 1)}</title></item>" for _ in range(100))
    p = parse(rss(items).encode())
    assert len(p.articles) == 100 and len(p.warnings) == MAX_WARNINGS
    assert p.warnings[-1] == "… and 81 more problems"


def test_encoding_that_breaks_the_detector_is_read_as_utf8():
    body = "<?xml version='1.0'?><?xml version='1.0' encoding='\u00fc'?>".encode("latin-1") + rss().encode()
    p = parse(body, "application/xml; charset=utf-16be")
    assert [a.title for a in p.articles] == ["t"] and p.encoding == "utf-8"
    assert "read as UTF-8" in p.warnings[0]
