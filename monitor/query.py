"""The one query language of Raqib, for search and for alert rules alike.

    word                 a word; Arabic words match with proclitics (الناتو ⇒ للناتو, بالناتو)
    "exact phrase"       consecutive words (“…” and «…» work too)
    a b  /  a AND b      both
    a OR b               either
    NOT a  /  -a         without
    ( … )                grouping
    title:word           in the title only (title:"a phrase" too); text:word in the body only
    topic:nato           tagged with a topic id
    source:bbc-arabic    from a source id (source:bbc matches bbc-arabic, bbc-…)
    lang:ar              in a language
    date:2024-12-01..2024-12-31, date:2024-12, date:>=2024-12-01, date:<2025, date:7d, date:24h

A relative date (date:24h) stays relative in the tree: it is resolved against the clock each
time it is evaluated (a search, an article matched), never frozen when a subscription loads.

Hostile input is bounded: a query is at most MAX_QUERY_CHARS long, nests at most MAX_DEPTH
deep (parentheses and NOT), has at most MAX_LEAVES words and filters, and every number is
range-checked; anything else is a one-line QueryError, never another exception.

Operators are upper-case; lower-case "or"/"and" are plain words. The parser produces an
immutable tree; each backend compiles the same tree (SQL for the embedded index, query DSL for
a cluster, a predicate for the alert matcher), so an alert fires exactly when a search would
find the article.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.arabic import WORD_RE, normalize, query_key
from monitor.errors import QueryError

TEXT_FIELDS = ("any", "title", "body")
FIELDS = ("title", "text", "topic", "source", "lang", "date")
MAX_QUERY_CHARS = 4000
MAX_DEPTH = 32  # parentheses and NOT, nested
MAX_LEAVES = 200  # words (a phrase counts each of its words) and filters
MIN_YEAR, MAX_YEAR = 1900, 2200
MAX_RELATIVE = timedelta(days=36_600)  # date:Nd / Nh / Nw reach back at most ~100 years

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Term:
    key: str
    raw: str
    field: str = "any"  # any | title | body


@dataclass(frozen=True)
class Phrase:
    keys: tuple[str, ...]
    raw: str
    field: str = "any"


@dataclass(frozen=True)
class Topic:
    id: str


@dataclass(frozen=True)
class Source:
    id: str


@dataclass(frozen=True)
class Lang:
    code: str


@dataclass(frozen=True)
class DateRange:
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive
    within: timedelta | None = None  # date:24h: published >= now - within, now read at evaluation

    def bounds(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        """(start, end) at `now` (the clock when not given): fixed unless the range is relative."""
        if self.within is None:
            return self.start, self.end
        return (now or utcnow()) - self.within, None


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Term | Phrase | Topic | Source | Lang | DateRange | And | Or | Not

_QUOTES = {'"': '"', "“": "”", "«": "»", "”": "”"}
_FIELD_RE = re.compile(r"(title|text|topic|source|lang|date):", re.IGNORECASE)
_FIELDLIKE_RE = re.compile(r"([A-Za-z_]+):(?=\S)")  # foo:bar — a field name nobody knows


@dataclass(frozen=True)
class _Tok:
    kind: str  # ( ) OR AND NOT WORD PHRASE
    value: str
    pos: int
    field: str | None = None


def _lex(q: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(q)
    while i < n:
        ch = q[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "()":
            out.append(_Tok(ch, ch, i))
            i += 1
            continue
        start = i
        field = None
        negate = False
        if ch == "-" and i + 1 < n and not q[i + 1].isspace():
            negate = True
            i += 1
            if q[i] == "(":  # -( … ): the group negated, as to_string() writes it
                out.append(_Tok("NOT", "-", start))
                continue
        m = _FIELD_RE.match(q, i)
        if m:
            field = m.group(1).lower()
            i = m.end()
        elif (m := _FIELDLIKE_RE.match(q, i)) and q[m.end()] not in ")":
            raise QueryError(f"unknown field {m.group(1)!r} (fields: {', '.join(FIELDS)}; "
                             "quote a text with ':' to search for it)", q, i)
        if i < n and q[i] in _QUOTES:
            close = _QUOTES[q[i]]
            j = q.find(close, i + 1)
            if j < 0:
                raise QueryError("unclosed quote", q, i)
            if negate:
                out.append(_Tok("NOT", "-", start))
            out.append(_Tok("PHRASE", q[i + 1:j], start, field))
            i = j + 1
            continue
        j = i
        while j < n and not q[j].isspace() and q[j] not in "()":
            j += 1
        word = q[i:j]
        if field and not word:
            raise QueryError(f"{field}: needs a value", q, start)
        if negate:
            out.append(_Tok("NOT", "-", start))
        if field is None and word in ("OR", "AND", "NOT", "|", "&"):
            out.append(_Tok({"|": "OR", "&": "AND"}.get(word, word), word, start))
        else:
            out.append(_Tok("WORD", word, start, field))
        i = j
    return out


class _Parser:
    def __init__(self, q: str):
        self.q = q
        self.toks = _lex(q)
        self.i = 0
        self.depth = 0
        self.leaves = 0

    def deeper(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"the query nests deeper than {MAX_DEPTH} levels of ( and NOT", self.q, tok.pos)

    def leaf_count(self, n: int, tok: _Tok) -> None:
        self.leaves += n
        if self.leaves > MAX_LEAVES:
            raise QueryError(f"the query has more than {MAX_LEAVES} words and filters", self.q, tok.pos)

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise QueryError("empty query", self.q)
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"unexpected {tok.value!r}", self.q, tok.pos)
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", ")"):
            if tok.kind == "AND":
                self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise QueryError("query ends where a word was expected", self.q, len(self.q))
        if tok.kind == "NOT":
            self.take()
            self.deeper(tok)
            node = Not(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "(":
            self.deeper(tok)
            node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise QueryError("missing ')'", self.q, tok.pos)
            self.take()
            self.depth -= 1
            return node
        if tok.kind in ("WORD", "PHRASE"):
            return self.leaf(tok)
        raise QueryError(f"unexpected {tok.value!r}", self.q, tok.pos)

    def leaf(self, tok: _Tok) -> Node:
        field = tok.field
        value = tok.value
        if field in (None, "title", "text"):
            tfield = {"title": "title", "text": "body"}.get(field or "", "any")
            words = [m.group() for m in WORD_RE.finditer(value)]
            if not words:
                raise QueryError(f"{value!r} has no searchable word", self.q, tok.pos)
            self.leaf_count(len(words), tok)
            keys = tuple(query_key(w) for w in words)
            if tok.kind == "PHRASE" and len(keys) > 1:
                return Phrase(keys, value, tfield)
            if len(keys) == 1:
                return Term(keys[0], value, tfield)
            # a bare token that splits into several words (e.g. "U.S.") is a phrase
            return Phrase(keys, value, tfield)
        self.leaf_count(1, tok)
        if field == "topic":
            return Topic(value.lower())
        if field == "source":
            return Source(value.lower())
        if field == "lang":
            if not _LANG_RE.fullmatch(value):
                raise QueryError(f"lang:{value}: not a language code (e.g. lang:ar, lang:en)", self.q, tok.pos)
            return Lang(value.lower())
        if field == "date":
            try:
                return parse_date_range(value)
            except ValueError as e:
                raise QueryError(f"date:{value}: {e}", self.q, tok.pos) from None
        raise QueryError(f"unknown field {field!r}", self.q, tok.pos)  # pragma: no cover


_LANG_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})?")


def parse(query: str) -> Node:
    """Parse a query; raises QueryError naming what is wrong and where (and nothing else,
    whatever the input)."""
    if not isinstance(query, str):
        raise QueryError("a query must be text")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is {len(query)} characters long; at most {MAX_QUERY_CHARS}")
    try:
        return _Parser(query).parse()
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the parser far from the limit
        raise QueryError("the query nests too deeply", query) from None
    except QueryError as e:
        raise _shortened(e) from None


SHOWN_QUERY_CHARS = 120


def _shortened(e: QueryError) -> QueryError:
    """`e` quoting at most SHOWN_QUERY_CHARS of a long query (around the error's position)."""
    suffix = f" in query {e.query!r}"
    text = str(e)
    if len(e.query) <= SHOWN_QUERY_CHARS or not text.endswith(suffix):
        return e
    at = max(0, min((e.position or 0) - SHOWN_QUERY_CHARS // 2, len(e.query) - SHOWN_QUERY_CHARS))
    shown = ("…" if at else "") + e.query[at:at + SHOWN_QUERY_CHARS] + (
        "…" if at + SHOWN_QUERY_CHARS < len(e.query) else "")
    short = QueryError(text[:-len(suffix)] + f" in query {shown!r}")
    short.query, short.position = e.query, e.position
    return short


def validate(node: Node, topics: Collection[str], sources: Collection[str]) -> None:
    """Raise QueryError when `node` names a topic or source that does not exist.

    `topics` are the topic ids of topics.yaml, `sources` the feed ids of feeds.yaml; a source
    pattern is valid when it matches at least one feed the way source:… does (bbc → bbc-arabic).
    A query that parses but names nothing real would be saved and never fire."""
    known_topics = sorted({t.lower() for t in topics})
    known_sources = sorted({s.lower() for s in sources})
    for leaf in _leaves(node):
        if isinstance(leaf, Topic) and leaf.id not in known_topics:
            raise QueryError(f"unknown topic {leaf.id!r} (topics: {_listing(known_topics)})")
        if isinstance(leaf, Source) and not any(source_matches(leaf.id, s) for s in known_sources):
            raise QueryError(f"unknown source {leaf.id!r} (sources: {_listing(known_sources)})")


def _listing(names: Sequence[str], most: int = 30) -> str:
    if not names:
        return "none configured"
    more = f", … {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _leaves(node: Node):
    match node:
        case And(children=cs) | Or(children=cs):
            for c in cs:
                yield from _leaves(c)
        case Not(child=c):
            yield from _leaves(c)
        case _:
            yield node


_REL_RE = re.compile(r"^([0-9]{1,7})([hdw])$")


def _parse_point(s: str, end: bool) -> datetime:
    """A date, month or year; as an end bound it means the end of that period."""
    s = normalize(s)
    if (y := re.match(r"(\d{4})(?:-|$)", s)) and not MIN_YEAR <= int(y.group(1)) <= MAX_YEAR:
        raise ValueError(f"year {y.group(1)} is out of range ({MIN_YEAR}–{MAX_YEAR})")
    for fmt, step in (("%Y-%m-%dT%H:%M", timedelta(minutes=1)), ("%Y-%m-%d", timedelta(days=1))):
        try:
            d = datetime.strptime(s, fmt).replace(tzinfo=UTC)
            return d + step if end else d
        except ValueError:
            pass
    if re.fullmatch(r"\d{4}-\d{2}", s):
        y, m = map(int, s.split("-"))
        d = datetime(y, m, 1, tzinfo=UTC)
        if end:
            return datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        return d
    if re.fullmatch(r"\d{4}", s):
        y = int(s)
        return datetime(y + 1 if end else y, 1, 1, tzinfo=UTC)
    raise ValueError(f"{s!r} is not a date (use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM)")


def parse_date_range(value: str) -> DateRange:
    v = normalize(value)
    if m := _REL_RE.match(v):
        n, unit = int(m.group(1)), m.group(2)
        delta = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        if not timedelta(0) < delta <= MAX_RELATIVE:
            raise ValueError(f"a relative date reaches back from 1h to {MAX_RELATIVE.days}d")
        return DateRange(None, None, delta)
    if re.fullmatch(r"[0-9]+[hdw]", v):
        raise ValueError(f"a relative date reaches back from 1h to {MAX_RELATIVE.days}d")
    if ".." in v:
        a, b = v.split("..", 1)
        rng = DateRange(_parse_point(a, False) if a else None, _parse_point(b, True) if b else None)
        if rng.start and rng.end and rng.end <= rng.start:
            raise ValueError("the range ends before it starts")
        return rng
    for op in (">=", "<=", ">", "<"):
        if v.startswith(op):
            rest = v[len(op):]
            if op == ">=":
                return DateRange(_parse_point(rest, False), None)
            if op == ">":
                return DateRange(_parse_point(rest, True), None)
            if op == "<=":
                return DateRange(None, _parse_point(rest, True))
            return DateRange(None, _parse_point(rest, False))
    return DateRange(_parse_point(v, False), _parse_point(v, True))


# ---- evaluation against one analyzed article (alert matcher, tests, verification) ----

@dataclass(frozen=True)
class AnalyzedDoc:
    """An article as the query language sees it; built by analysis.analyzed_doc()."""

    title: Sequence[tuple[str, ...]]
    body: Sequence[tuple[str, ...]]
    title_keys: frozenset[str]
    body_keys: frozenset[str]
    topics: frozenset[str]
    source: str
    lang: str
    published: datetime
    all_keys: Collection[str] = frozenset()  # title_keys | body_keys (a set from analyzed_doc)


def source_matches(pattern: str, source: str) -> bool:
    s = source.lower()
    return s == pattern or s.startswith(pattern + "-")


def phrase_in(positions: Sequence[tuple[str, ...]], keys: tuple[str, ...]) -> bool:
    k = len(keys)
    first = keys[0]
    for i in range(len(positions) - k + 1):
        if first in positions[i] and all(keys[j] in positions[i + j] for j in range(1, k)):
            return True
    return False


def phrase_in_text(norm: str, keys: tuple[str, ...]) -> bool:
    """phrase_in() over a NORMALIZED text without tokenizing all of it: every match starts at
    a token holding keys[0] (a form is a suffix of its token), so only windows around its
    occurrences are tokenized. Windows start and end at spaces, where tokenization of the
    window and of the whole text agree; a window short of the phrase is widened."""
    from monitor.arabic import forms

    k0 = keys[0]
    n = len(norm)
    span = sum(len(k) + 4 for k in keys) + 16
    start = 0
    while (i := norm.find(k0, start)) >= 0:
        a = norm.rfind(" ", 0, i) + 1
        width = span
        while True:
            b = norm.find(" ", i + width)
            b = n if b < 0 else b
            toks = [m for m in WORD_RE.finditer(norm, a, b)]
            after = [m for m in toks if m.end() > i]
            if len(after) >= len(keys) or b == n:
                break
            width *= 4
        if phrase_in([forms(m.group()) for m in toks], keys):
            return True
        start = i + 1
    return False


def evaluate(node: Node, doc: AnalyzedDoc, now: datetime | None = None) -> bool:
    """Does `doc` match `node`? The reference semantics every backend compiles; relative
    dates are resolved at `now` (the clock when not given)."""
    match node:
        case Term(key=key, field=field):
            return (field != "body" and key in doc.title_keys) or (field != "title" and key in doc.body_keys)
        case Phrase(keys=keys, field=field):
            return (field != "body" and phrase_in(doc.title, keys)) or (
                field != "title" and phrase_in(doc.body, keys))
        case Topic(id=tid):
            return tid in doc.topics
        case Source(id=sid):
            return source_matches(sid, doc.source)
        case Lang(code=code):
            return doc.lang == code
        case DateRange():
            start, end = node.bounds(now)
            return (start is None or doc.published >= start) and (end is None or doc.published < end)
        case And(children=children):
            return all(evaluate(c, doc, now) for c in children)
        case Or(children=children):
            return any(evaluate(c, doc, now) for c in children)
        case Not(child=child):
            return not evaluate(child, doc, now)
    raise TypeError(f"not a query node: {node!r}")


def compile_predicate(node: Node, clock: Clock = utcnow):
    """`node` as a closure over an AnalyzedDoc: the meaning of evaluate(), several times faster
    (the alert matcher runs it for every candidate rule of every article). Set operations do
    the common shapes in C: all words present, any word present. A relative date reads
    `clock` each time it is evaluated, so a rule compiled once keeps a moving window."""
    match node:
        case Term(key=key, field="any"):
            return lambda d: key in d.all_keys
        case Term(key=key, field="title"):
            return lambda d: key in d.title_keys
        case Term(key=key, field="body"):
            return lambda d: key in d.body_keys
        case Phrase(keys=keys, field=field):
            kset = frozenset(keys)

            def phrase(d: AnalyzedDoc) -> bool:
                if not kset <= d.all_keys:
                    return False
                if field != "body" and kset <= d.title_keys and phrase_in(d.title, keys):
                    return True
                return field != "title" and kset <= d.body_keys and phrase_in(d.body, keys)
            return phrase
        case And(children=cs) if all(isinstance(c, Term) and c.field == "any" for c in cs):
            kset = frozenset(c.key for c in cs)  # type: ignore[union-attr]
            return lambda d: kset <= d.all_keys
        case Or(children=cs) if all(isinstance(c, Term) and c.field == "any" for c in cs):
            kset = frozenset(c.key for c in cs)  # type: ignore[union-attr]
            return lambda d: not kset.isdisjoint(d.all_keys)
        case DateRange(within=within) if within is not None:
            return lambda d: d.published >= clock() - within
        case And(children=cs):
            preds = [compile_predicate(c, clock) for c in cs]
            return lambda d: all(p(d) for p in preds)
        case Or(children=cs):
            preds = [compile_predicate(c, clock) for c in cs]
            return lambda d: any(p(d) for p in preds)
        case Not(child=c):
            pred = compile_predicate(c, clock)
            return lambda d: not pred(d)
    return lambda d: evaluate(node, d)


def has_relative_date(node: Node) -> bool:
    """True when the meaning of `node` depends on the clock (a date:24h somewhere in it)."""
    return any(isinstance(x, DateRange) and x.within is not None for x in _leaves(node))


def without_relative_dates(node: Node, positive: bool = True) -> Node:
    """A clock-free tree matching a SUPERSET of `node` at every instant: each relative date
    becomes "any date" where it counts for a match and "no date" under NOT. A store that
    cannot re-read the clock (a percolator) keeps this and the caller re-checks its hits
    with evaluate() at the time of matching."""
    match node:
        case DateRange(within=within) if within is not None:
            return DateRange(None, None) if positive else Not(DateRange(None, None))
        case And(children=cs):
            return And(tuple(without_relative_dates(c, positive) for c in cs))
        case Or(children=cs):
            return Or(tuple(without_relative_dates(c, positive) for c in cs))
        case Not(child=c):
            return Not(without_relative_dates(c, not positive))
    return node


def positive_keys(node: Node) -> set[str]:
    """Word keys that make a document match (for highlighting): everything not under NOT."""
    match node:
        case Term(key=key):
            return {key}
        case Phrase(keys=keys):
            return set(keys)
        case And(children=cs) | Or(children=cs):
            return set().union(*(positive_keys(c) for c in cs))
    return set()


def to_string(node: Node) -> str:
    """Canonical text of a tree (stable: used to compare and deduplicate rules)."""
    match node:
        case Term(raw=raw, field=field):
            return {"any": "", "title": "title:", "body": "text:"}[field] + raw
        case Phrase(raw=raw, field=field):
            return {"any": "", "title": "title:", "body": "text:"}[field] + f'"{raw}"'
        case Topic(id=i):
            return f"topic:{i}"
        case Source(id=i):
            return f"source:{i}"
        case Lang(code=c):
            return f"lang:{c}"
        case DateRange(within=w) if w is not None:
            hours = int(w.total_seconds() // 3600)
            return f"date:{hours // 24}d" if hours % 24 == 0 else f"date:{hours}h"
        case DateRange(start=s, end=e):
            return f"date:{s.isoformat() if s else ''}..{e.isoformat() if e else ''}"
        case And(children=cs):
            return " ".join(f"({to_string(c)})" if isinstance(c, Or) else to_string(c) for c in cs)
        case Or(children=cs):
            return " OR ".join(to_string(c) for c in cs)
        case Not(child=c):
            return f"-({to_string(c)})" if isinstance(c, (And, Or)) else f"-{to_string(c)}"
    raise TypeError(node)
