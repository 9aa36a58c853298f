"""Why a result matched, as offsets into the ORIGINAL text (diacritics, clitics and all).

A query's words and phrases are found again in the title and body (a phrase is ONE span over
its contiguous words); a `topic:` query's spans are the tagger's mentions stored with the
article (Article.matches). The snippet is the sentence holding the first mention of an asked
topic, else the window holding the most of the query's words, else the article's opening.
Marks are offsets (monitor.models.Mark), never inline characters: whoever shows them decides
how (colour on a terminal, [ ] in a pipe, <mark> in HTML, offsets in JSON)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from monitor.arabic import MARKS_RE, WORD_RE, forms
from monitor.models import Article, Mark, SearchHit, Snippet

WIDTH = 240  # characters in a snippet, about two lines
_SENTENCE_END = re.compile(r"[.!?؟۔\n]")


@dataclass(frozen=True)
class Wanted:
    """What a query asks for, positively (nothing under NOT is highlighted).
    terms: field ("any" | "title" | "body") -> keys; phrases: (keys, field); topics: ids."""

    terms: dict[str, frozenset[str]] = field(default_factory=dict)
    phrases: tuple[tuple[tuple[str, ...], str], ...] = ()
    topics: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.terms or self.phrases or self.topics)


def wanted(node) -> Wanted:
    """The positive words, phrases and topics of a parsed query (monitor.query nodes)."""
    from monitor.query import And, Or, Phrase, Term, Topic

    terms: dict[str, set[str]] = {}
    phrases: list[tuple[tuple[str, ...], str]] = []
    topics: set[str] = set()

    def walk(n) -> None:
        match n:
            case Term(key=key, field=f):
                terms.setdefault(f, set()).add(key)
            case Phrase(keys=keys, field=f):
                if len(keys) == 1:
                    terms.setdefault(f, set()).add(keys[0])
                elif keys and (keys, f) not in phrases:
                    phrases.append((keys, f))
            case Topic(id=i):
                topics.add(i)
            case And(children=cs) | Or(children=cs):
                for c in cs:
                    walk(c)

    walk(node)
    return Wanted({f: frozenset(k) for f, k in terms.items()}, tuple(phrases), frozenset(topics))


def keys_wanted(keys: Collection[str]) -> Wanted:
    """Plain word keys, searched in every field."""
    return Wanted({"any": frozenset(keys)} if keys else {})


# ---------------------------------------------------------------- finding spans

def _words(text: str) -> list[tuple[tuple[str, ...], int, int]]:
    """(forms, start, end) of each word of `text`, offsets into the original (trailing marks
    included). The text is normalized once, with the tagger's offset map."""
    from monitor.tagger import _normalize_with_map

    norm, to_orig = _normalize_with_map(text)
    out = []
    n = len(text)
    for m in WORD_RE.finditer(norm):
        s, e = to_orig(m.start()), to_orig(m.end() - 1) + 1
        while e < n and MARKS_RE.match(text, e):
            e += 1
        out.append((forms(m.group()), s, e))
    return out


def _query_spans(text: str, w: Wanted, fld: str) -> list[tuple[int, int, str]]:
    """(start, end, item) of every query word and phrase found in one field; item names what
    matched (a key, or a phrase) so a window can count distinct ones."""
    keys = w.terms.get("any", frozenset()) | w.terms.get(fld, frozenset())
    phrases = [k for k, f in w.phrases if f in ("any", fld)]
    if not (keys or phrases) or not text:
        return []
    words = _words(text)
    out = []
    for i, (fs, s, e) in enumerate(words):
        for f in fs:
            if f in keys:
                out.append((s, e, f))
                break
        for p in phrases:
            k = len(p)
            if i + k <= len(words) and all(p[j] in words[i + j][0] for j in range(k)):
                out.append((s, words[i + k - 1][2], " ".join(p)))
    return out


def _mentions(article: Article, topics: Collection[str]) -> tuple[list[Mark], list[Mark]]:
    """The tagger's spans of the asked topics, split into title and body marks (Match offsets
    index article.text = title + "\\n" + body); a span that no longer fits its text is dropped."""
    title_marks, body_marks = [], []
    if not topics:
        return title_marks, body_marks
    t = len(article.title)
    body = article.body
    for m in article.matches:
        if m.topic not in topics:
            continue
        if m.end <= t and article.title[m.start:m.end] == m.text:
            title_marks.append(Mark(m.start, m.end, "title", m.topic))
        elif m.start > t and body[m.start - t - 1:m.end - t - 1] == m.text:
            body_marks.append(Mark(m.start - t - 1, m.end - t - 1, "body", m.topic))
    return title_marks, body_marks


def _merged(marks: Iterable[Mark]) -> tuple[Mark, ...]:
    """Sorted, overlaps joined (a phrase swallows its words; a topic's name is kept)."""
    out: list[Mark] = []
    for m in sorted(marks, key=lambda m: (m.start, -m.end)):
        if out and m.start < out[-1].end:
            last = out[-1]
            out[-1] = Mark(last.start, max(last.end, m.end), last.field, last.topic or m.topic)
        else:
            out.append(m)
    return tuple(out)


# ---------------------------------------------------------------- choosing the window

def _snap(text: str, start: int, end: int) -> tuple[int, int]:
    """Move a window's ends out to word boundaries (no word cut in half), within reason."""
    if start > 0:
        sp = text.rfind(" ", 0, start)
        start = sp + 1 if sp >= 0 and start - sp < 30 else start
    if end < len(text):
        sp = text.find(" ", end)
        end = sp if 0 <= sp < end + 30 else end
    return start, end


def _sentence(text: str, at: int, end: int, width: int) -> tuple[int, int]:
    """The sentence holding text[at:end]; a sentence longer than `width` is cut to a window
    with the span a third of the way in."""
    s = max((m.end() for m in _SENTENCE_END.finditer(text, 0, at)), default=0)
    nxt = _SENTENCE_END.search(text, end)
    e = nxt.end() if nxt else len(text)
    if e - s <= width:
        return s, e
    ws = max(s, at - width // 3)
    we = min(e, ws + width)
    return _snap(text, ws, we)


def _best_window(spans: list[tuple[int, int, str]], width: int) -> int:
    """Where the window holding the most distinct matched items (then the most matches) starts;
    the earliest such span wins."""
    spans = sorted(spans)[:5000]
    lead = width // 3
    reach = width - lead
    best, best_score = spans[0][0], (0, 0)
    have: Counter[str] = Counter()
    j = 0
    for i, (s, _, _) in enumerate(spans):
        while j < len(spans) and spans[j][1] <= s + reach:
            have[spans[j][2]] += 1
            j += 1
        score = (len(have), j - i)
        if score > best_score:
            best, best_score = s, score
        if j > i:
            have[spans[i][2]] -= 1
            if not have[spans[i][2]]:
                del have[spans[i][2]]
        else:
            j = i + 1
    return best


def _snippet(text: str, fld: str, marks: tuple[Mark, ...], spans: list[tuple[int, int, str]],
             anchor: Mark | None, width: int) -> Snippet:
    if anchor is not None:
        start, end = _sentence(text, anchor.start, anchor.end, width)
    elif spans:
        ws = max(0, _best_window(spans, width) - width // 3)
        start, end = _snap(text, ws, min(len(text), ws + width))
    else:
        start, end = _snap(text, 0, min(len(text), width))
    # no white space at the ends; the marks follow the text
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    inside = tuple(Mark(m.start - start, m.end - start, fld, m.topic)
                   for m in marks if start <= m.start and m.end <= end)
    return Snippet(text[start:end], inside, fld, start, start > 0, end < len(text))


def explain(article: Article, w: Wanted, width: int = WIDTH) -> tuple[tuple[Mark, ...], Snippet]:
    """(title marks, snippet) for one article and what the query wanted."""
    t_topics, b_topics = _mentions(article, w.topics)
    title_marks = _merged([*t_topics, *(Mark(s, e, "title") for s, e, _ in
                                        _query_spans(article.title, w, "title"))])
    body = article.body
    if not body.strip():  # nothing but a title: the snippet is the title
        return title_marks, _snippet(article.title, "title", title_marks, [], None, width)
    spans = _query_spans(body, w, "body")
    body_marks = _merged([*b_topics, *(Mark(s, e, "body") for s, e, _ in spans)])
    anchor = min(b_topics, key=lambda m: m.start) if b_topics else None
    return title_marks, _snippet(body, "body", body_marks, spans, anchor, width)


def make_hit(article: Article, score: float, w: Wanted, width: int = WIDTH) -> SearchHit:
    title_marks, snip = explain(article, w, width)
    return SearchHit(article=article, score=score, title_marks=title_marks, snippet=snip)


# ---------------------------------------------------------------- showing marks

def render(text: str, marks: Iterable[Mark], open_: str, close: str) -> str:
    """`text` with each mark wrapped in open_/close (for people; JSON carries the offsets)."""
    out, last = [], 0
    for m in sorted(marks, key=lambda m: m.start):
        if m.start < last:
            continue
        out += [text[last:m.start], open_, text[m.start:m.end], close]
        last = m.end
    out.append(text[last:])
    return "".join(out)


def spans(text: str, keys: Collection[str]) -> list[tuple[int, int]]:
    """(start, end) of every word of `text` that answers to one of `keys`."""
    return [(s, e) for s, e, _ in _query_spans(text, keys_wanted(keys), "any")]
