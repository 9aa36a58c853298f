"""Index layout and query DSL for Elasticsearch / OpenSearch: pure functions, no I/O.

Both clients speak the same DSL for everything used here, so indexers.engine shares it.

Equality with the embedded index and the alert matcher
------------------------------------------------------
A cluster must find exactly the articles monitor.query.evaluate() accepts. Rather than trust
the engine's own Arabic analysis (which stems differently), each article carries Raqib's OWN
normalized tokens in two fields, `title_tokens` and `body_tokens` (monitor.arabic.tokens of
the title and of the body, space-joined), analyzed by a plain whitespace tokenizer: one token
per position, byte for byte what Python produced.

A query key k matches a token t iff k in monitor.arabic.forms(t). forms(t) is t plus t minus
each leading proclitic chain p (when at least min_stem(p) characters remain and t has an Arabic
letter, which t = p + k always has), so

    k in forms(t)  <=>  t in surface_forms(k) = {k} | {p + k for p in chains_before(k)}

and a word becomes a `terms` lookup of its surface forms. A phrase is a span_near (slop 0, in
order) of one span per word matching its surface forms: a span_multi over the regexp
"(p1|p2|…)?k" (escaped, so it matches exactly surface_forms(k)), which rewrites to the forms
that occur. A span_or of all 27 forms would be the same set, but Lucene's 1024-clause limit
counts them: a 15-word phrase failed, and one such alert subscription broke every
percolation. The phrase's longest word is also required as a plain `terms` lookup (implied
by the phrase) so the percolator can still pre-select candidate queries by term.
Note the equivalence holds for a Latin or digit key too: "وnato" is one token whose forms
include "nato". tests/test_engine.py checks it on the corpus, regexp form included.

Dates are compared on `published_us` (epoch microseconds, a long): the `date` type keeps
milliseconds, and a relative range (date:24h) has microseconds, as do stored articles.
A relative range is resolved when a search is translated. A stored percolator query cannot
re-read the clock, so it keeps monitor.query.without_relative_dates(node) — a superset at any
instant — and the percolating code re-checks those hits with evaluate() at match time
(needs_recheck, raqib_query in the stored document).
Sources are compared on `source_key`, the source lower-cased by Python exactly as
monitor.query.source_matches does. The human fields (`title`, `summary`, `content`, with an
Arabic chain and `.en`) serve display, ranking-free exploration and Kibana/Dashboards users;
the translated query never looks at them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from monitor.analysis import analysis_of
from monitor.arabic import chains_before
from monitor.errors import QueryError
from monitor.models import Article, Match
from monitor.query import (And, DateRange, Lang, Node, Not, Or, Phrase, Source, Term, Topic,
                           has_relative_date, positive_keys, without_relative_dates)
from monitor.store import from_iso, iso

TOKEN_FIELDS = {"title": ("title_tokens",), "body": ("body_tokens",),
                "any": ("title_tokens", "body_tokens")}
TITLE_BOOST = 3.0  # as the embedded index (indexers.tantivy_index.TITLE_BOOST)
MAX_RANKED_KEYS = 12
MAX_TOKEN_CHARS = 10_000  # < Lucene's 32766-byte term limit at 3 UTF-8 bytes per UTF-16 unit
MAX_PAGE = 10_000  # index.max_result_window


# ---------------------------------------------------------------- names ----

@dataclass(frozen=True)
class Names:
    """Every index, alias and template name derived from one prefix."""

    prefix: str = "raqib"

    @property
    def template(self) -> str:
        return f"{self.prefix}-articles"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}-articles-*"

    @property
    def read_alias(self) -> str:
        return f"{self.prefix}-articles"

    @property
    def write_alias(self) -> str:
        return f"{self.prefix}-articles-write"

    @property
    def deliveries(self) -> str:
        """One document per (subscription, article, channel) alert, created by the worker
        that will send it: the cluster-wide guard against two workers alerting twice."""
        return f"{self.prefix}-deliveries"

    @property
    def first_index(self) -> str:
        return f"{self.prefix}-articles-000001"

    @property
    def percolator(self) -> str:
        return f"{self.prefix}-subscriptions"


# -------------------------------------------------------- surface forms ----

@lru_cache(maxsize=100_000)
def surface_forms(key: str) -> frozenset[str]:
    """Every normalized token t with key in monitor.arabic.forms(t)."""
    return frozenset([key, *(p + key for p in chains_before(key))])


def _sorted_forms(key: str) -> list[str]:
    return sorted(surface_forms(key))


# -------------------------------------------------------------- mappings ----

def analysis_settings() -> dict:
    return {
        "analysis": {
            "tokenizer": {
                "raqib_whitespace": {"type": "whitespace", "max_token_length": MAX_TOKEN_CHARS},
            },
            "analyzer": {
                # Raqib's own tokens, already normalized: split on spaces, change nothing.
                "raqib_tokens": {"type": "custom", "tokenizer": "raqib_whitespace"},
                # For people exploring the index (and highlighting in Dashboards/Kibana).
                "raqib_arabic": {
                    "type": "custom", "tokenizer": "standard",
                    "filter": ["lowercase", "decimal_digit", "arabic_normalization", "arabic_stem"],
                },
            },
        }
    }


def _token_field() -> dict:
    return {"type": "text", "analyzer": "raqib_tokens", "norms": True}


def _human_text(keyword: bool = False) -> dict:
    fields: dict[str, Any] = {"en": {"type": "text", "analyzer": "english"}}
    if keyword:
        fields["keyword"] = {"type": "keyword", "ignore_above": 1024}
    return {"type": "text", "analyzer": "raqib_arabic", "fields": fields}


def _match_fields() -> dict:
    """The fields a query can look at: shared by the article and the percolator index."""
    return {
        "title_tokens": _token_field(),
        "body_tokens": _token_field(),
        "topics": {"type": "keyword"},
        "source_key": {"type": "keyword"},
        "language": {"type": "keyword"},
        "published_us": {"type": "long"},
    }


def article_mappings() -> dict:
    return {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "feed_url": {"type": "keyword", "ignore_above": 4096},
            "link": {"type": "keyword", "ignore_above": 4096},
            "source": {"type": "keyword", "ignore_above": 1024},
            "title": _human_text(keyword=True),
            "summary": _human_text(),
            "content": _human_text(),
            "published": {"type": "date"},
            "fetched": {"type": "date"},
            "matches": {"type": "object", "enabled": False},
            **_match_fields(),
        },
    }


def index_settings(shards: int = 1, replicas: int = 1) -> dict:
    return {"number_of_shards": shards, "number_of_replicas": replicas, **analysis_settings()}


def article_template(names: Names, shards: int = 1, replicas: int = 1) -> dict:
    """Body of the composable index template for the time-based article indices.

    The read alias is in the template, so every index a rollover creates joins it; the write
    alias is moved by the rollover itself (it must not be in a template)."""
    return {
        "index_patterns": [names.pattern],
        "priority": 200,
        "template": {
            "settings": index_settings(shards, replicas),
            "mappings": article_mappings(),
            "aliases": {names.read_alias: {}},
        },
        "_meta": {"managed_by": "raqib", "layout": 1},
    }


def first_index_body(names: Names) -> dict:
    return {"aliases": {names.write_alias: {"is_write_index": True}, names.read_alias: {}}}


def percolator_mappings() -> dict:
    return {
        "dynamic": "strict",
        "properties": {
            **_match_fields(),
            "sub_id": {"type": "keyword"},
            "raqib_query": {"type": "keyword", "index": False, "doc_values": False},
            "query": {"type": "percolator"},
        },
    }


def percolator_index_body(shards: int = 1, replicas: int = 1) -> dict:
    return {"settings": index_settings(shards, replicas), "mappings": percolator_mappings()}


def rollover_conditions(max_docs: int | None = None, max_age: str | None = None,
                        max_size: str | None = None) -> dict:
    """Rollover conditions (any one met rolls over), e.g. max_docs=5_000_000, max_age="30d"."""
    cond: dict[str, Any] = {}
    if max_docs is not None:
        if max_docs < 1:
            raise ValueError("max_docs must be positive")
        cond["max_docs"] = int(max_docs)
    if max_age is not None:
        cond["max_age"] = max_age
    if max_size is not None:
        cond["max_size"] = max_size
    return cond


def rollover_body(conditions: Mapping[str, Any] | None = None) -> dict:
    return {"conditions": dict(conditions)} if conditions else {}


# ------------------------------------------------------------- documents ----

def epoch_us(dt: datetime) -> int:
    d = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def match_doc(article: Article) -> dict:
    """The fields a query looks at (what the percolator is given). The tokens are the
    article's shipped analysis (monitor.analysis): re-tokenizing here cost the bulk path
    ~0.18 ms per article, twice what the client spends on everything else (BENCHMARKS.md,
    Engine)."""
    a = analysis_of(article)
    return {
        "title_tokens": a.title_tokens,
        "body_tokens": a.body_tokens,
        "topics": list(article.topics),
        "source_key": article.source.lower(),
        "language": article.language,
        "published_us": epoch_us(article.published),
    }


def article_doc(article: Article) -> dict:
    """The stored document: the article as the store has it, plus the match fields."""
    return {
        "id": article.id,
        "feed_url": article.feed_url,
        "source": article.source,
        "title": article.title,
        "summary": article.summary,
        "content": article.content,
        "link": article.link,
        "published": iso(article.published),
        "fetched": iso(article.fetched),
        "matches": [{"topic": m.topic, "start": m.start, "end": m.end, "text": m.text}
                    for m in article.matches],
        **match_doc(article),
    }


def article_from_source(src: Mapping[str, Any]) -> Article:
    return Article(
        id=src["id"], feed_url=src.get("feed_url", ""), source=src.get("source", ""),
        title=src.get("title", ""), summary=src.get("summary", ""), content=src.get("content", ""),
        link=src.get("link", ""), published=from_iso(src["published"]),
        fetched=from_iso(src["fetched"]), language=src.get("language", ""),
        topics=tuple(src.get("topics") or ()),
        matches=tuple(Match(m["topic"], m["start"], m["end"], m["text"])
                      for m in src.get("matches") or ()),
    )


# ----------------------------------------------------- query translation ----

MATCH_ALL: dict = {"match_all": {}}


def _terms(field: str, key: str) -> dict:
    forms = _sorted_forms(key)
    if len(forms) == 1:
        return {"term": {field: forms[0]}}
    return {"terms": {field: forms}}


def _escape_regexp(text: str) -> str:
    """`text` as a Lucene regular expression matching exactly itself."""
    return "".join(ch if ch.isalnum() else "\\" + ch for ch in text)


MAX_REGEXP = 900  # index.max_regex_length is 1000


@lru_cache(maxsize=16)
def _proclitic_re(chains: tuple[str, ...]) -> str:
    return "(" + "|".join(_escape_regexp(p) for p in chains) + ")?"


def surface_regexp(key: str) -> str | None:
    """A Lucene regexp matching exactly surface_forms(key) (None when it would be too long)."""
    chains = chains_before(key)
    if not chains:
        return None
    rx = _proclitic_re(chains) + _escape_regexp(key)
    return rx if len(rx) <= MAX_REGEXP else None


def _span_word(field: str, key: str) -> dict:
    """A span matching any surface form of `key`. A span_multi over a regexp rewrites to the
    forms that actually occur, so a long phrase does not cost 27 clauses per word (Lucene's
    clause limit counts after rewriting); the regexp is built from escaped text, exact."""
    rx = surface_regexp(key)
    if rx is None:
        forms = _sorted_forms(key)
        terms = [{"span_term": {field: f}} for f in forms]
        return terms[0] if len(terms) == 1 else {"span_or": {"clauses": terms}}
    return {"span_multi": {"match": {"regexp": {field: {"value": rx, "flags": "NONE"}}}}}


def _span_phrase(field: str, keys: Sequence[str]) -> dict:
    clauses = [_span_word(field, k) for k in keys]
    if len(clauses) == 1:
        return clauses[0]
    return {"span_near": {"clauses": clauses, "slop": 0, "in_order": True}}


def _either(queries: list[dict]) -> dict:
    if len(queries) == 1:
        return queries[0]
    return {"bool": {"should": queries, "minimum_should_match": 1}}


def to_dsl(node: Node, now: datetime | None = None) -> dict:
    """The query DSL with exactly the meaning of monitor.query.evaluate(node, ·, now)."""
    if now is None and has_relative_date(node):
        now = datetime.now(UTC)
    return _to_dsl(node, now)


def _to_dsl(node: Node, now: datetime | None) -> dict:
    match node:
        case Term(key=key, field=field):
            return _either([_terms(f, key) for f in TOKEN_FIELDS[field]])
        case Phrase(keys=keys, field=field):
            spans = _either([_span_phrase(f, keys) for f in TOKEN_FIELDS[field]])
            # The longest word as a plain terms lookup too: redundant for the result (the
            # phrase contains it), but it lets the percolator pre-select candidate queries by
            # term, which it cannot do from a span_multi.
            anchor = max(keys, key=lambda k: (len(k), k))
            return {"bool": {"must": [_either([_terms(f, anchor) for f in TOKEN_FIELDS[field]]),
                                      spans]}}
        case Topic(id=tid):
            return {"term": {"topics": tid}}
        case Source(id=sid):
            return {"bool": {"should": [{"term": {"source_key": sid}},
                                        {"prefix": {"source_key": sid + "-"}}],
                             "minimum_should_match": 1}}
        case Lang(code=code):
            return {"term": {"language": code}}
        case DateRange():
            start, end = node.bounds(now)
            rng: dict[str, int] = {}
            if start is not None:
                rng["gte"] = epoch_us(start)
            if end is not None:
                rng["lt"] = epoch_us(end)
            return {"range": {"published_us": rng}} if rng else dict(MATCH_ALL)
        case And(children=cs):
            must = [_to_dsl(c, now) for c in cs if not isinstance(c, Not)]
            must_not = [_to_dsl(c.child, now) for c in cs if isinstance(c, Not)]
            body: dict[str, Any] = {"must": must or [dict(MATCH_ALL)]}
            if must_not:
                body["must_not"] = must_not
            return {"bool": body}
        case Or(children=cs):
            return {"bool": {"should": [_to_dsl(c, now) for c in cs], "minimum_should_match": 1}}
        case Not(child=c):
            return {"bool": {"must": [dict(MATCH_ALL)], "must_not": [_to_dsl(c, now)]}}
    raise QueryError(f"cannot translate {node!r}")


def _ranked_word(field: str, key: str, boost: float) -> dict:
    rx = surface_regexp(key)
    if rx is None:
        return {"bool": {"should": [{"term": {field: {"value": f, "boost": boost}}}
                                    for f in _sorted_forms(key)]}}
    # scoring_boolean: BM25 over each form that occurs (and only those count as clauses)
    return {"regexp": {field: {"value": rx, "flags": "NONE", "rewrite": "scoring_boolean",
                               "boost": boost}}}


def ranking_clauses(node: Node) -> list[dict]:
    """Optional (scoring only) clauses: BM25 of the query's positive words over the token
    fields, title weighted like the embedded index. They never change which articles match."""
    keys = sorted(positive_keys(node), key=lambda k: (-len(k), k))[:MAX_RANKED_KEYS]
    out = []
    for k in sorted(keys):
        out += [_ranked_word("title_tokens", k, TITLE_BOOST), _ranked_word("body_tokens", k, 1.0)]
    return out


def search_query(node: Node, now: datetime | None = None) -> dict:
    """The tree decides membership (filter); the ranking clauses only score."""
    query: dict[str, Any] = {"bool": {"filter": [to_dsl(node, now)]}}
    ranking = ranking_clauses(node)
    if ranking:
        query["bool"]["should"] = ranking
    return query


SOURCE_EXCLUDES = ["title_tokens", "body_tokens", "source_key", "published_us"]


def sort_spec(sort: str, ranked: bool) -> list[dict]:
    if sort == "relevance" and ranked:
        return [{"_score": {"order": "desc"}}, {"published_us": {"order": "desc"}},
                {"id": {"order": "asc"}}]
    if sort in ("relevance", "date"):
        return [{"published_us": {"order": "desc"}}, {"id": {"order": "asc"}}]
    raise QueryError(f"unknown sort {sort!r} (relevance or date)")


def search_body(node: Node, *, size: int, sort: str = "relevance",
                search_after: Sequence[Any] | None = None, now: datetime | None = None) -> dict:
    ranked = bool(ranking_clauses(node))
    body: dict[str, Any] = {
        "query": search_query(node, now),
        "sort": sort_spec(sort, ranked),
        "size": size,
        "track_total_hits": True,
        "_source": {"excludes": SOURCE_EXCLUDES},
    }
    if search_after:
        body["search_after"] = list(search_after)
    return body


# ---------------------------------------------------------------- cursor ----

def encode_cursor(sort: str, after: Sequence[Any], seen: int) -> str:
    raw = json.dumps({"s": sort, "a": list(after), "n": seen}, separators=(",", ":"),
                     ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[list[Any], int]:
    try:
        pad = "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(cursor + pad))
        after, seen = data["a"], int(data["n"])
        if data["s"] != sort or not isinstance(after, list) or seen < 0:
            raise ValueError
        return after, seen
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise QueryError(f"invalid cursor {cursor!r}") from None


# ---------------------------------------------------------------- trends ----

def trends_body(node: Node | None, interval: str, start: datetime | None, end: datetime | None,
                after: Mapping[str, Any] | None = None, page: int = 1000) -> dict:
    if interval not in ("hour", "day"):
        raise QueryError(f"unknown interval {interval!r} (hour or day)")
    filters = [to_dsl(node)] if node is not None else []
    if start is not None or end is not None:
        filters.append(to_dsl(DateRange(start, end)))
    filters.append({"exists": {"field": "topics"}})
    composite: dict[str, Any] = {
        "size": page,
        "sources": [
            {"topic": {"terms": {"field": "topics"}}},
            {"bucket": {"date_histogram": {"field": "published", "calendar_interval": interval,
                                           "time_zone": "UTC"}}},
        ],
    }
    if after:
        composite["after"] = dict(after)
    return {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": filters}},
            "aggs": {"trends": {"composite": composite}}}


# ----------------------------------------------------------- percolation ----

def subscription_doc(sub_id: str, query: str, node: Node) -> dict:
    """The stored percolator query. Clock-free: relative dates are relaxed to a superset (see
    the module docstring) and the hit re-checked by needs_recheck/evaluate at match time."""
    return {"sub_id": sub_id, "raqib_query": query, "query": to_dsl(without_relative_dates(node))}


@lru_cache(maxsize=100_000)
def needs_recheck(raqib_query: str) -> Node | None:
    """The parsed tree of a stored subscription whose percolator query was relaxed (it has a
    relative date), else None: such a hit is a candidate until evaluate() says so."""
    from monitor.query import parse

    try:
        node = parse(raqib_query)
    except QueryError:
        return None  # stored by a version that accepted it; the percolator's answer stands
    return node if has_relative_date(node) else None


def percolate_body(documents: Sequence[Mapping[str, Any]], *, size: int = 1000,
                   search_after: Sequence[Any] | None = None) -> dict:
    body: dict[str, Any] = {
        "query": {"percolate": {"field": "query", "documents": list(documents)}},
        "sort": [{"sub_id": {"order": "asc"}}],
        "size": size,
        "_source": ["raqib_query"],  # to re-check relaxed (relative-date) subscriptions
        "track_total_hits": False,
    }
    if search_after:
        body["search_after"] = list(search_after)
    return body


def slots(hit: Mapping[str, Any], n_documents: int) -> list[int]:
    """The positions (in the percolated batch) of the documents a percolator hit matched."""
    found = (hit.get("fields") or {}).get("_percolator_document_slot")
    if found is None:
        if n_documents == 1:  # older engines leave the slot out for a single document
            return [0]
        raise ValueError(f"percolator hit {hit.get('_id')!r} has no _percolator_document_slot")
    return [int(s) for s in found]


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
