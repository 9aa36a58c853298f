"""What an alert says: one item or a digest of several, rendered for each kind of channel.

Arabic has to read correctly wherever it lands:

* plain text (mail bodies, subjects, JSON-webhook messages): every line of an Arabic item starts
  with U+200F RIGHT-TO-LEFT MARK, so clients that pick a paragraph's direction from its first
  strong character lay it out right to left, and each field (title, source, date, snippet) is
  wrapped in a Unicode isolate — RLI … PDI (U+2067 … U+2069) for right-to-left text, LRI … PDI
  (U+2066) for left-to-right text inside an Arabic line — so a Latin source name, a date or a
  number never reorders its neighbours. Links stay alone on their own left-to-right line.
* HTML: each Arabic item is a ``dir="rtl" lang="ar"`` block, every field a ``<bdi>``, the whole
  body ``dir="auto"``; the snippet's marks (offsets, never inline characters: Arabic quotes with
  «…» itself) become ``<mark>``; everything is
  escaped, and only http(s)/mailto links become ``href``.
* Markdown (Slack, Discord, Telegram): matches become ``**bold**``, markup characters in the
  text are backslash-escaped, Arabic lines start with U+200F.
* JSON (webhooks): ``{"type": "raqib.alert", "version": 2, "id": …, "count": …, "items": […]}``
  with ISO-8601 UTC dates (``2024-05-01T12:00:00Z``); each item's ``snippet`` is
  ``{"text", "marks": [{"start", "end", "field", "topic"}]}``, the shape of a search hit's.
* Plain text shows the snippet without marks.

Feed content is hostile until proven otherwise (see :func:`clean_field` and :func:`safe_link`):

* every field, links included, loses bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E/F,
  U+061C), zero-width and other invisible format characters (U+200B–U+200D, U+2060–U+2064,
  U+FEFF, soft hyphen; this joins Persian words that relied on U+200C) and control characters;
  newlines and other line breaks collapse to one space, so a title cannot add lines to a plain-text
  body or a mail header;
* mass mentions cannot fire: every ``@`` becomes U+FF20 FULLWIDTH COMMERCIAL AT (Discord and
  Apprise's Discord plugin ping ``@everyone``, ``@here``, ``<@id>``, Slack ``<@id>``) and a ``!``
  before a letter becomes U+FF01 (Slack ``<!channel>``, ``<!here>``, ``<!everyone>``). Zero-width
  joiners would be stripped again, and Apprise offers no ``allowed_mentions``, so a look-alike
  character is the defence that survives every hop;
* a link is used only when it is http(s), has a host and no user-info, and holds no whitespace or
  control character; it is re-encoded (IDNA host, percent-encoded path and query, so ``( ) < > "
  ' | * `` and spaces cannot end a Markdown or HTML link). Any other link is dropped: the title is
  shown without one;
* Markdown escapes every character CommonMark (and Python-Markdown, which Apprise uses to turn
  Markdown into HTML for email and Telegram) could read as markup, ``<`` included, so no raw HTML,
  link or image reaches an HTML reader.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "FSI",
    "LRI",
    "LRM",
    "PDI",
    "RLI",
    "RLM",
    "AlertItem",
    "clean_field",
    "clean_marked",
    "has_rtl",
    "is_rtl_item",
    "iso_utc",
    "item_dict",
    "markdown_title",
    "message_id",
    "render_html",
    "render_markdown",
    "render_text",
    "safe_link",
    "to_json",
]

RLI, LRI, FSI, PDI = "\u2067", "\u2066", "\u2068", "\u2069"
RLM, LRM = "\u200f", "\u200e"

APP = "Raqib"
_RTL_LANGS = {"ar", "fa", "ur", "he", "iw", "ps", "ku", "ckb", "sd", "yi", "dv", "ug"}
_RTL_CHARS = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
_LTR_CHARS = re.compile("[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")
# bidi controls, zero-width and invisible format characters, and the control characters that
# str.split() does not already treat as white space
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_MENTION_BANG = re.compile(r"!(?=[A-Za-z])")
_LINK_MAX = 2048
_HOST_RE = re.compile(r"[a-z0-9\-_.]+")
_SUBJECT_TITLE_MAX = 120


@dataclass(frozen=True)
class AlertItem:
    delivery_id: str            # unique per (subscription, article); stable across retries
    subscription_id: str
    subscription_name: str
    query: str
    article_id: str
    title: str
    source: str
    link: str
    topics: tuple[str, ...]
    snippet: str                # a window of the article's text (why it matched), no inline marks
    published: datetime         # aware UTC
    language: str               # "ar", "en", ...
    # (start, end, topic) into `snippet`: the query's words/phrases (topic None) and the asked
    # topics' mentions, as monitor.highlight found them
    snippet_marks: tuple[tuple[int, int, str | None], ...] = ()

    def __post_init__(self) -> None:  # read back from JSON, the marks are lists
        object.__setattr__(self, "snippet_marks", tuple(
            (int(a), int(b), t) for a, b, t in self.snippet_marks))


# --------------------------------------------------------------------------- helpers

def has_rtl(text: str) -> bool:
    return bool(_RTL_CHARS.search(text or ""))


def is_rtl_item(item: AlertItem) -> bool:
    """Arabic (or another right-to-left language) by its language tag, else by its title."""
    lang = (item.language or "").lower().replace("_", "-").split("-")[0]
    if lang:
        return lang in _RTL_LANGS
    return has_rtl(item.title)


def clean_field(text: str) -> str:
    """A feed-supplied field made safe to show anywhere: one line, no bidi/zero-width/control
    characters (they would unbalance our isolates or hide text), mass mentions neutralised."""
    text = " ".join(_INVISIBLE.sub("", str(text or "")).split())
    return _MENTION_BANG.sub("\uff01", text.replace("@", "\uff20"))


_clean = clean_field


def clean_marked(text: str, marks) -> tuple[str, list[tuple[int, int, str | None]]]:
    """clean_field() of a snippet, its (start, end, topic) marks moved along with the text
    (cleaning drops and collapses characters); a mark left empty is dropped."""
    kept: list[str] = []
    at = [0] * (len(text) + 1)  # offset in the output of each input offset
    for i, ch in enumerate(text):
        at[i] = len(kept)
        if _INVISIBLE.match(ch):
            continue
        if ch.isspace():
            if kept and kept[-1] != " ":
                kept.append(" ")
            continue
        kept.append(ch)
    at[len(text)] = len(kept)
    while kept and kept[-1] == " ":
        kept.pop()
    n = len(kept)
    out = "".join(kept).replace("@", "\uff20")
    out = _MENTION_BANG.sub("\uff01", out)
    moved = []
    for s, e, topic in sorted(marks):
        s2, e2 = min(at[max(0, min(s, len(text)))], n), min(at[max(0, min(e, len(text)))], n)
        while s2 < e2 and out[s2] == " ":
            s2 += 1
        while e2 > s2 and out[e2 - 1] == " ":
            e2 -= 1
        if s2 < e2 and (not moved or s2 >= moved[-1][1]):
            moved.append((s2, e2, topic))
    return out, moved


def _marked(item: AlertItem, plain, mark) -> str:
    """The cleaned snippet with plain(text) between marks and mark(text) around them."""
    text, marks = clean_marked(item.snippet, item.snippet_marks)
    out, pos = [], 0
    for s, e, _ in marks:
        out += [plain(text[pos:s]), mark(text[s:e])]
        pos = e
    out.append(plain(text[pos:]))
    return "".join(out)


def _snippet_dict(item: AlertItem) -> dict:
    text, marks = clean_marked(item.snippet, item.snippet_marks)
    return {"text": text, "marks": [{"start": s, "end": e, "field": "body", "topic": t}
                                    for s, e, t in marks]}


def _pct(part: str, safe: str) -> str:
    part = re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", part)
    return quote(part, safe=safe + "%")


def safe_link(link: str) -> str | None:
    """The link, re-encoded, when it is safe to put in a message; otherwise None.

    Safe means http(s) with a host, no user-info (``https://bank.example@evil.example``), no
    whitespace or control characters once invisible characters are removed, at most 2048
    characters. The result is ASCII: an IDNA host and a percent-encoded path, query and fragment
    in which only ``/-._~!$&+,;=:@%`` (and ``?`` in the query) stay literal."""
    link = _INVISIBLE.sub("", str(link or "")).strip()
    if not link or len(link) > _LINK_MAX or any(c.isspace() for c in link):
        return None
    try:
        p = urlsplit(link)
        host, port = p.hostname, p.port
    except ValueError:
        return None
    if p.scheme.lower() not in ("http", "https") or not host or "@" in p.netloc:
        return None
    if ":" in host:
        try:
            netloc = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    else:
        try:
            host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            return None
        if not _HOST_RE.fullmatch(host):
            return None
        netloc = host
    if port is not None:
        netloc += f":{port}"
    path = _pct(p.path, "/-._~!$&+,;=:@")
    query = _pct(p.query, "/?-._~!$&+,;=:@")
    fragment = _pct(p.fragment, "/?-._~!$&+,;=:@")
    return urlunsplit((p.scheme.lower(), netloc, path, query, fragment))


def _iso(text: str, rtl_context: bool) -> str:
    """Isolate a field: RLI…PDI around right-to-left text; LRI…PDI around left-to-right text
    sitting in a right-to-left line (a Latin source, a date); nothing around plain LTR text in
    an LTR line unless it holds Arabic."""
    if not text:
        return text
    if has_rtl(text):
        return f"{RLI}{text}{PDI}"
    if rtl_context:
        return f"{LRI}{text}{PDI}"
    return text


def _when(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_utc(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_id(items: list[AlertItem]) -> str:
    """The id of one message: the item's delivery id, or a digest id made from all of them
    (order-independent, so a retried digest of the same items keeps its id)."""
    if not items:
        raise ValueError("an alert message needs at least one item")
    if len(items) == 1:
        return items[0].delivery_id
    h = hashlib.blake2b(digest_size=12)
    for d in sorted(i.delivery_id for i in items):
        h.update(d.encode())
        h.update(b"\0")
    return "digest-" + h.hexdigest()


def _names(items: list[AlertItem]) -> list[str]:
    seen: dict[str, None] = {}
    for it in items:
        seen.setdefault(_clean(it.subscription_name or it.subscription_id), None)
    return list(seen)


def _subject(items: list[AlertItem]) -> str:
    names = _names(items)
    name = _iso(names[0], False) if len(names) == 1 else f"{len(names)} subscriptions"
    if len(items) == 1:
        title = _iso(_shorten(_clean(items[0].title), _SUBJECT_TITLE_MAX), False)
        return f"[{APP}] {name}: {title}"
    return f"[{APP}] {len(items)} new matches for {name}"


def _heading(items: list[AlertItem], wrap=lambda s: _iso(s, False)) -> str:
    """The first body line: plain text with isolates, or (given `wrap`) HTML with <bdi>."""
    names = _names(items)
    who = ", ".join(wrap(n) for n in names)
    n = len(items)
    what = "1 new match" if n == 1 else f"{n} new matches"
    queries = {_clean(i.query) for i in items if i.query}
    q = f" (query: {wrap(next(iter(queries)))})" if len(queries) == 1 else ""
    return f"{what} for {who}{q}"


# --------------------------------------------------------------------------- plain text

def _text_item(item: AlertItem) -> list[str]:
    rtl = is_rtl_item(item)
    lead = RLM if rtl else ""
    meta = [_iso(_clean(item.source), rtl), _iso(_when(item.published), rtl)]
    if item.topics:
        meta.append(_iso(_clean(", ".join(item.topics)), rtl))
    lines = [lead + _iso(_clean(item.title), rtl),
             lead + " · ".join(m for m in meta if m)]
    if item.snippet:
        lines.append(lead + _iso(_clean(item.snippet), rtl))
    link = safe_link(item.link)
    if link:
        lines.append(LRM + link)
    return lines


def render_text(items: list[AlertItem]) -> tuple[str, str]:
    """(subject, plain-text body). A digest subject counts the items."""
    if not items:
        raise ValueError("an alert message needs at least one item")
    blocks = [[_heading(items)]] + [_text_item(it) for it in items]
    body = "\n\n".join("\n".join(b) for b in blocks)
    return _subject(items), body + f"\n\n-- \n{APP}\n"


# --------------------------------------------------------------------------- HTML

def _html_marked(item: AlertItem) -> str:
    return _marked(item, html.escape, lambda t: f"<mark>{html.escape(t)}</mark>")


def _html_item(item: AlertItem) -> str:
    rtl = is_rtl_item(item)
    lang = (item.language or ("ar" if rtl else "")).strip()
    lang = lang if re.fullmatch(r"[A-Za-z0-9\-_]{1,35}", lang) else ""
    attrs = f' dir="{"rtl" if rtl else "ltr"}"' + (f' lang="{lang}"' if lang else "")
    # an RLM opening each RTL block is invisible in HTML, but survives the HTML-to-text
    # conversion mail libraries make for the text/plain alternative
    lead = RLM if rtl else ""
    title = html.escape(_clean(item.title) or "(untitled)")
    href = safe_link(item.link)
    if href:
        title = f'<a href="{html.escape(href, quote=True)}">{title}</a>'
    meta = [f"{lead}<bdi>{html.escape(_clean(item.source))}</bdi>" if item.source else "",
            f'<time datetime="{iso_utc(item.published)}" dir="ltr">{_when(item.published)}</time>']
    if item.topics:
        meta.append(f"<bdi>{html.escape(_clean(', '.join(item.topics)))}</bdi>")
    parts = [f'<div class="raqib-item"{attrs} style="margin:0 0 1.2em 0">',
             f'<h3 style="margin:0 0 .2em 0;font-size:1.1em">{lead}{title}</h3>',
             f'<p style="margin:0;color:#555;font-size:.9em">{" · ".join(m for m in meta if m)}</p>']
    if item.snippet:
        parts.append(f'<p style="margin:.3em 0">{lead}{_html_marked(item)}</p>')
    if href:  # an unsafe link is dropped, not shown as text someone might copy
        shown = f'<a href="{html.escape(href, quote=True)}">{html.escape(href)}</a>'
        parts.append(f'<p dir="ltr" style="margin:0;font-size:.85em">{shown}</p>')
    parts.append("</div>")
    return "\n".join(parts)


def render_html(items: list[AlertItem]) -> str:
    """A complete HTML document; Arabic items in dir="rtl" lang="ar" blocks."""
    if not items:
        raise ValueError("an alert message needs at least one item")
    subject = html.escape(_INVISIBLE.sub("", _subject(items)))
    heading = _heading(items, lambda s: f"<bdi>{html.escape(s)}</bdi>")
    body = "\n".join(_html_item(it) for it in items)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{subject}</title></head>\n"
            '<body dir="auto" style="font-family:Tahoma,Arial,sans-serif;line-height:1.5">\n'
            f'<p dir="ltr" style="color:#333">{heading}</p>\n'
            f"{body}\n"
            f'<p style="color:#888;font-size:.8em">— {APP}</p>\n</body></html>\n')


# --------------------------------------------------------------------------- Markdown

# every character CommonMark or Python-Markdown (with the tables and fenced-code extensions
# Apprise enables) could read as markup anywhere in a line; `<` included, or raw HTML passes
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~!{}()])")
# at the start of a line also list items, headings' underlines and thematic breaks
_MD_LINE_START = re.compile(r"^([\-+=])|^(\d+)\.")


def _md(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\.", text)


def _md_marked(item: AlertItem) -> str:
    return _marked(item, _md, lambda t: f"**{_md(t.strip())}**" if t.strip() else "")


def markdown_title(items: list[AlertItem]) -> str:
    """The subject for a service that reads the title as Markdown (Discord shows it as such,
    Telegram blends it into the body): escaped like the body."""
    return _md(_subject(items))


def render_markdown(items: list[AlertItem]) -> str:
    """Markdown for chat services; the subject goes in the notification title, not here."""
    if not items:
        raise ValueError("an alert message needs at least one item")
    blocks = []
    for it in items:
        rtl = is_rtl_item(it)
        lead = RLM if rtl else ""
        title = _md(_clean(it.title) or "(untitled)")
        href = safe_link(it.link)  # already free of ( ) < > spaces and quotes
        # the mark goes inside the ** so CommonMark still sees an opening delimiter
        head = f"**{lead}[{title}]({href})**" if href else f"**{lead}{title}**"
        meta = [_md(_clean(it.source)), _when(it.published)]
        if it.topics:
            meta.append(_md(_clean(", ".join(it.topics))))
        lines = [head, lead + " · ".join(m for m in meta if m)]
        if it.snippet:
            lines.append(lead + _md_marked(it))
        blocks.append("\n".join(lines))
    if len(items) > 1:
        blocks.insert(0, _md(_INVISIBLE.sub("", _heading(items))))
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------- JSON

def item_dict(item: AlertItem) -> dict:
    """One item for JSON: text fields cleaned like every other format, the link only when safe
    (else "")."""
    return {
        "delivery_id": item.delivery_id,
        "subscription_id": item.subscription_id,
        "subscription_name": _clean(item.subscription_name),
        "query": _clean(item.query),
        "article_id": item.article_id,
        "title": _clean(item.title),
        "source": _clean(item.source),
        "link": safe_link(item.link) or "",
        "topics": [_clean(t) for t in item.topics],
        "snippet": _snippet_dict(item),
        "published": iso_utc(item.published),
        "language": item.language,
    }


def to_json(items: list[AlertItem]) -> dict:
    """The webhook payload."""
    if not items:
        raise ValueError("an alert message needs at least one item")
    return {"type": "raqib.alert", "version": 2, "id": message_id(items), "count": len(items),
            "items": [item_dict(it) for it in items]}
