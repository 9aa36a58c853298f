"""The embedded index: a tantivy index directory beside the store (<data dir>/index/).

Articles stay in SQLite (monitor.store); the index holds, per article, Raqib's own analysis and
the article's rowid, and a search reads its page's rows back from the store.

Equality with the alert matcher, by construction
------------------------------------------------
Title and body are given to tantivy pre-tokenized: token i of monitor.arabic.tokens(text)
becomes every key of monitor.arabic.forms(token) at position i. So a query key is one term
lookup (k in forms(t), exactly the matcher's test), and a phrase is tantivy's own positional
phrase query over the keys: key j at position p + j for some p — monitor.query.phrase_in.
Nothing is tokenized by tantivy and nothing is verified afterwards in Python.

The query tree is translated node by node (never through tantivy's query parser): words and
phrases score (BM25, title ×3), filters do not. Topics, language and the source are raw terms;
`source:bbc` is one term lookup because each article also carries every dash-prefix of its
source (bbc-arabic carries bbc and bbc-arabic), which is monitor.query.source_matches exactly.
Dates are epoch microseconds (an i64 fast field), relative ranges resolved with `clock` when a
search runs.

One writer: the process that first indexes takes tantivy's writer lock and keeps it (the
service); a second writer gets a clear IndexError_. Readers in other processes reload before
each search (a few µs when nothing changed) and so see every commit. index() returns only
after the commit, so the store's `indexed` flag never runs ahead of the index.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import tantivy
from tantivy import Occur, Query

from indexers.base import FACET_FETCH, Facets, TrendBucket, facet_lists
from monitor.analysis import analysis_of
from monitor.arabic import forms, tokens
from monitor.errors import IndexError_, QueryError
from monitor.highlight import make_hit, wanted
from monitor.models import Article, SearchPage
from monitor.query import (And, Clock, DateRange, Lang, Node, Not, Or, Phrase, Source, Term, Topic,
                           parse, positive_keys, utcnow)
from monitor.store import Store

log = logging.getLogger(__name__)

MAX_OFFSET = 1_000_000
MAX_LIMIT = 100_000
TITLE_BOOST = 3.0
MAX_TOKEN_CHARS = 10_000  # longer tokens are left out: no query word can be that long
WRITER_HEAP = 64_000_000
WRITER_THREADS = 1  # one segment per commit: less merging; the indexing thread keeps up with Python
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FIELDS = {"any": ("title", "body"), "title": ("title",), "body": ("body",)}
_INTERVALS = {"hour": 3600 * 10**6, "day": 86400 * 10**6}


def to_us(dt: datetime) -> int:
    """Exact epoch microseconds (what evaluate() compares, to the microsecond)."""
    return (dt - _EPOCH) // _US


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_integer_field("rowid", stored=True, indexed=True, fast=True)
    sb.add_text_field("title", tokenizer_name="raw", index_option="position")
    sb.add_text_field("body", tokenizer_name="raw", index_option="position")
    sb.add_text_field("topics", tokenizer_name="raw", fast=True)
    sb.add_text_field("source", tokenizer_name="raw")  # the source and its dash-prefixes
    sb.add_text_field("lang", tokenizer_name="raw", fast=True)
    sb.add_integer_field("published_us", indexed=True, fast=True)
    return sb.build()


def source_terms(source: str) -> list[str]:
    """Every pattern p with source_matches(p, source): the source and each prefix before a '-'."""
    s = source.lower()
    return [s] + [s[:i] for i, ch in enumerate(s) if ch == "-" and i > 0]


def pre_tokenized(text: str) -> tantivy.PreTokenizedString:
    """Each token's proclitic forms at one position (offsets are not used: highlighting
    re-reads the stored text with the same analyzer)."""
    return _pre_tokenized(tokens(text))


def _pre_tokenized(toks: Sequence[str], Token=tantivy.Token, forms=forms) -> tantivy.PreTokenizedString:
    """(Locals bound as defaults: this runs for every token of every article indexed.)"""
    return tantivy.PreTokenizedString("", [Token(k, pos, 0) for pos, t in enumerate(toks)
                                           if len(t) <= MAX_TOKEN_CHARS for k in forms(t)])


class _Compiler:
    """Raqib's query tree as tantivy queries (no query parser ever sees user text)."""

    def __init__(self, schema: tantivy.Schema, now: datetime):
        self.schema = schema
        self.now = now

    def _const(self, q: Query) -> Query:
        return Query.const_score_query(q, 0.0)

    def _any(self, per_field) -> Query:
        qs = [(Occur.Should, Query.boost_query(q, TITLE_BOOST) if f == "title" else q)
              for f, q in per_field]
        return qs[0][1] if len(qs) == 1 else Query.boolean_query(qs)

    def _all(self) -> Query:
        return self._const(Query.all_query())

    def compile(self, node: Node) -> Query:
        s = self.schema
        match node:
            case Term(key=key, field=field):
                return self._any((f, Query.term_query(s, f, key)) for f in _FIELDS[field])
            case Phrase(keys=keys, field=field):
                if len(keys) == 1:
                    return self.compile(Term(keys[0], "", field))
                return self._any((f, Query.phrase_query(s, f, list(keys))) for f in _FIELDS[field])
            case Topic(id=tid):
                return self._const(Query.term_query(s, "topics", tid))
            case Source(id=sid):
                return self._const(Query.term_query(s, "source", sid))
            case Lang(code=code):
                return self._const(Query.term_query(s, "lang", code))
            case DateRange():
                start, end = node.bounds(self.now)
                if start is None and end is None:
                    return self._all()
                return self._const(Query.range_query(
                    s, "published_us", tantivy.FieldType.Integer,
                    None if start is None else to_us(start), None if end is None else to_us(end),
                    include_upper=end is None))
            case And(children=cs):
                parts = [(Occur.MustNot, self.compile(c.child)) if isinstance(c, Not)
                         else (Occur.Must, self.compile(c)) for c in cs]
                if all(o == Occur.MustNot for o, _ in parts):
                    parts.append((Occur.Must, self._all()))
                return Query.boolean_query(parts)
            case Or(children=cs):
                return Query.boolean_query([(Occur.Should, self.compile(c)) for c in cs])
            case Not(child=c):
                return Query.boolean_query([(Occur.Must, self._all()), (Occur.MustNot, self.compile(c))])
        raise QueryError(f"cannot compile {node!r}")


def compile_query(schema: tantivy.Schema, node: Node, now: datetime | None = None) -> Query:
    """The tantivy query for `node`; relative dates resolved at `now`."""
    return _Compiler(schema, now or utcnow()).compile(node)


def _cursor(cursor: str | None, sort: str) -> int | tuple[int, int] | None:
    """An offset ("o:N", relevance) or the last hit's (published µs, rowid) ("d:P:R", date)."""
    if not cursor:
        return None
    try:
        kind, _, value = cursor.partition(":")
        if kind == "o" and sort == "relevance" and value.isdigit() and len(value) <= 7:
            if int(value) <= MAX_OFFSET:
                return int(value)
        if kind == "d" and sort == "date":
            p, r = value.split(":")
            if len(p) <= 20 and len(r) <= 20:
                return int(p), int(r)
        raise ValueError
    except ValueError:
        raise QueryError(f"invalid cursor {cursor[:40]!r} (for sort {sort})") from None


class TantivyIndex:
    """ArticleIndex over a tantivy directory (see indexers.base for the contract)."""

    commits_apart = True  # add() then commit(): the drain commits about once a second

    def __init__(self, db_path: Path | str, clock: Clock = utcnow, path: Path | str | None = None):
        self.db_path = Path(db_path)
        self.path = Path(path) if path else self.db_path.parent / "index"
        self.clock = clock  # what "now" is for relative dates (date:24h)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raqib-index")
        self.store = Store(self.db_path)
        self.schema = build_schema()
        self._writer: tantivy.IndexWriter | None = None
        self._added: set[str] = set()  # ids added since the last commit
        self._dropped = False  # a rollback outside the drain dropped uncommitted pages
        fresh = not (self.path / "meta.json").exists()
        self.ix: tantivy.Index | None = None
        self._broken = ""  # why the directory cannot be opened (health says red, reindex rebuilds)
        self._open()
        self._migrate(fresh)

    def _open(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.ix = tantivy.Index(self.schema, path=str(self.path), reuse=True)
            self._broken = ""
        except (OSError, ValueError) as e:
            log.error("cannot open the search index %s: %s", self.path, e)
            self.ix, self._broken = None, str(e)

    def _index(self) -> tantivy.Index:
        if self.ix is None:
            raise IndexError_(f"{self.path}: the search index cannot be opened; "
                              "`raqib index reindex` rebuilds it")
        return self.ix

    def _migrate(self, fresh: bool) -> None:
        """A data dir from the FTS5 era, or one whose index directory is new while the store
        says articles are indexed: every article goes back in the index queue."""
        try:
            if self.store.drop_legacy_fts():
                log.warning("search index moved from SQLite FTS5 to %s: every article is queued "
                            "for indexing", self.path)
            elif fresh and self.store.index_counts()[0]:
                log.warning("the search index %s is new: every stored article is queued for indexing",
                            self.path)
                self.store.requeue_for_index()
        except Exception as e:  # a read-only process: the writer will do it
            log.warning("could not queue articles for the new search index: %s", e)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---- writing ----

    def _writer_(self) -> tantivy.IndexWriter:
        if self._writer is None:
            try:
                self._writer = self._index().writer(heap_size=WRITER_HEAP, num_threads=WRITER_THREADS)
            except ValueError as e:
                if "LockBusy" in str(e):
                    raise IndexError_(f"{self.path}: another Raqib process (the service) is writing "
                                      "the search index; articles stay queued for it") from None
                raise IndexError_(f"{self.path}: cannot write the search index: {e}") from None
        return self._writer

    async def index(self, articles: Sequence[Article]) -> None:
        await self._run(self.index_sync, articles)

    def index_sync(self, articles: Sequence[Article]) -> None:
        """Replace each article's document; returns after the commit (durable)."""
        self.add_sync(articles)
        self.commit_sync()

    async def add(self, articles: Sequence[Article]) -> None:
        await self._run(self.add_sync, articles)

    async def commit(self) -> None:
        await self._run(self.commit_sync)

    def add_sync(self, articles: Sequence[Article]) -> None:
        """Replace each article's document, not yet visible or durable: a drain adds page
        after page and commits about once a second (each commit is a segment to write and
        later merge). A failure rolls back everything added since the last commit."""
        rowids = self.store.rowids([a.id for a in articles])
        missing = [a.id for a in articles if a.id not in rowids]
        if missing:
            self._rollback()
            raise IndexError_(f"article {missing[0]} is not in the store")
        w = self._writer_()
        try:
            replaced = self._held([a.id for a in articles])
            for a in articles:
                doc = tantivy.Document()
                doc.add_text("id", a.id)
                doc.add_integer("rowid", rowids[a.id])
                # The parse worker's tokens when they came with the article (analyze once).
                an = analysis_of(a)
                doc.add_pre_tokenized_text("title", _pre_tokenized(an.title_tokens.split()))
                doc.add_pre_tokenized_text("body", _pre_tokenized(an.body_tokens.split()))
                for t in a.topics:
                    doc.add_text("topics", t)
                for s in source_terms(a.source):
                    doc.add_text("source", s)
                doc.add_text("lang", a.language)
                doc.add_integer("published_us", to_us(a.published))
                if a.id in replaced:  # an updated article (or one indexed before a crash)
                    w.delete_documents_by_term("id", a.id)
                replaced.add(a.id)
                self._added.add(a.id)
                w.add_document(doc)
        except (ValueError, OSError) as e:
            self._rollback()
            raise IndexError_(f"{self.path}: indexing failed: {e}") from None

    async def delete(self, ids: Sequence[str]) -> None:
        await self._run(self.delete_sync, ids)

    def delete_sync(self, ids: Sequence[str]) -> None:
        """Remove these articles' documents (retention); returns after the commit."""
        if not ids:
            return
        w = self._writer_()
        try:
            for aid in ids:
                w.delete_documents_by_term("id", aid)
            w.commit()  # also commits pages a drain added: they are durable sooner, no harm
            self._added.clear()
        except (ValueError, OSError) as e:
            # The rollback also drops pages a drain added and has not committed yet; its next
            # commit must fail so it leaves them queued instead of marking them indexed.
            self._rollback()
            self._dropped = True
            raise IndexError_(f"{self.path}: deleting documents failed: {e}") from None

    def _held(self, ids: list[str]) -> set[str]:
        """The ids among `ids` the index already holds, committed or added since: only their
        old documents need deleting (a delete per document costs at every commit)."""
        if not ids:
            return set()
        ix = self._index()
        ix.reload()
        searcher = ix.searcher()
        res = searcher.search(Query.term_set_query(self.schema, "id", ids), len(ids), count=False)
        return {searcher.doc(addr)["id"][0] for _, addr in res.hits} | (self._added & set(ids))

    def commit_sync(self) -> None:
        """Make what was added visible to searchers and durable."""
        if self._dropped:
            self._dropped = False
            raise IndexError_(f"{self.path}: documents added since the last commit were rolled back "
                              "(a failed deletion); they stay queued")
        w = self._writer_()
        try:
            w.commit()
            self._added.clear()
        except (ValueError, OSError) as e:
            self._rollback()
            raise IndexError_(f"{self.path}: indexing failed: {e}") from None

    def _rollback(self) -> None:
        self._added.clear()
        if self._writer is not None:
            try:
                self._writer.rollback()
            except ValueError as e:  # pragma: no cover - the writer is gone already
                log.warning("search index rollback failed: %s", e)

    def clear_sync(self) -> None:
        """Remove every document (`raqib index reindex` starts from nothing); a directory
        that cannot be opened is deleted and created anew."""
        if self.ix is None:
            shutil.rmtree(self.path, ignore_errors=True)
            self._open()
        w = self._writer_()
        w.delete_all_documents()
        w.commit()
        self._added.clear()

    async def clear(self) -> None:
        await self._run(self.clear_sync)

    # ---- reading ----

    def _searcher(self) -> tantivy.Searcher:
        ix = self._index()
        ix.reload()  # see other processes' commits
        return ix.searcher()

    async def search(self, query: str, *, limit: int = 20, cursor: str | None = None,
                     sort: Literal["relevance", "date"] = "relevance") -> SearchPage:
        return await self._run(self.search_sync, query, limit, cursor, sort)

    def search_sync(self, query: str, limit: int = 20, cursor: str | None = None,
                    sort: str = "relevance") -> SearchPage:
        node = parse(query)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        if sort not in ("relevance", "date"):
            raise QueryError(f"unknown sort {sort!r} (relevance or date)")
        keys = positive_keys(node)
        if not keys:
            sort = "date"  # nothing to rank by: newest first
        after = _cursor(cursor, sort)
        q = compile_query(self.schema, node, self.clock())
        try:
            searcher = self._searcher()
            if sort == "date":
                total, ranked, nxt = self._by_date(searcher, q, limit, after)  # type: ignore[arg-type]
            else:
                total, ranked, nxt = self._by_score(searcher, q, limit, after or 0)  # type: ignore[arg-type]
        except ValueError as e:
            log.debug("tantivy search failed: %s", e)
            raise IndexError_("search failed in the embedded index; `raqib index reindex` rebuilds it") from None
        rows = self.store.articles_by_rowid([r for r, _ in ranked])
        w = wanted(node)
        hits = tuple(make_hit(a, score, w) for r, score in ranked if (a := rows.get(r)) is not None)
        return SearchPage(total=total, hits=hits, next_cursor=nxt)

    def _by_score(self, searcher: tantivy.Searcher, q: Query, limit: int,
                  offset: int) -> tuple[int, list[tuple[int, float]], str | None]:
        res = searcher.search(q, limit, count=True, offset=offset)
        rowids = searcher.fast_field_values("rowid", [a for _, a in res.hits]) if res.hits else []
        ranked = [(r, float(s)) for r, (s, _) in zip(rowids, res.hits, strict=True)]
        nxt = f"o:{offset + limit}" if offset + limit < res.count else None
        return res.count, ranked, nxt

    def _by_date(self, searcher: tantivy.Searcher, q: Query, limit: int,
                 after: tuple[int, int] | None) -> tuple[int, list[tuple[int, float]], str | None]:
        """Newest first, ties by rowid (newest stored first): a keyset cursor, so paging
        while articles arrive neither repeats nor skips one."""
        page_q = q
        if after is not None:
            p, r = after
            before = Query.boolean_query([
                (Occur.Should, self._range("published_us", None, p - 1)),
                (Occur.Should, Query.boolean_query([(Occur.Must, self._range("published_us", p, p)),
                                                    (Occur.Must, self._range("rowid", None, r - 1))]))])
            page_q = Query.boolean_query([(Occur.Must, q), (Occur.Must, before)])
        res = searcher.search(page_q, limit, count=True, order_by_field="published_us")
        addrs = [a for _, a in res.hits]
        keyed = list(zip((int(p) for p, _ in res.hits),
                         searcher.fast_field_values("rowid", addrs) if addrs else [], strict=True))
        if len(keyed) == limit and res.count > limit:
            # Articles published at the same instant as the last hit: tantivy orders those
            # arbitrarily, so take the newest rowids among all of them.
            last = keyed[-1][0]
            keyed = [k for k in keyed if k[0] > last]
            ties_q = Query.boolean_query([(Occur.Must, page_q),
                                          (Occur.Must, self._range("published_us", last, last))])
            ties = searcher.search(ties_q, limit - len(keyed), count=False, order_by_field="rowid")
            keyed += [(last, int(r)) for r, _ in ties.hits]
        keyed.sort(reverse=True)
        total = res.count if after is None else searcher.search(q, 1, count=True).count
        nxt = f"d:{keyed[-1][0]}:{keyed[-1][1]}" if res.count > limit else None
        return total, [(r, 0.0) for _, r in keyed], nxt

    def _range(self, field: str, lo: int | None, hi: int | None) -> Query:
        return Query.range_query(self.schema, field, tantivy.FieldType.Integer, lo, hi, use_inverted_index=True)

    async def trends(self, query: str | None = None, *, interval: Literal["hour", "day"] = "day",
                     start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]:
        return await self._run(self.trends_sync, query, interval, start, end)

    def trends_sync(self, query: str | None = None, interval: str = "day",
                    start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]:
        """Articles per topic per hour or day (a terms aggregation over a date histogram)."""
        if interval not in _INTERVALS:
            raise QueryError(f"unknown interval {interval!r} (hour or day)")
        node: Node = parse(query) if query else DateRange(None, None)
        if start or end:
            node = And((node, DateRange(start, end)))
        q = compile_query(self.schema, node, self.clock())
        width = _INTERVALS[interval]
        agg = {"topics": {"terms": {"field": "topics", "size": 10_000},
                          "aggs": {"t": {"histogram": {"field": "published_us", "interval": width,
                                                       "min_doc_count": 1}}}}}
        try:
            result = self._searcher().aggregate(q, agg)
        except ValueError as e:
            log.debug("tantivy aggregation failed: %s", e)
            raise IndexError_("trends failed in the embedded index; `raqib index reindex` rebuilds it") from None
        out = []
        for tb in result["topics"]["buckets"]:
            for hb in tb["t"]["buckets"]:
                when = _EPOCH + timedelta(microseconds=int(hb["key"]))
                out.append(TrendBucket(when, tb["key"], int(hb["doc_count"])))
        out.sort(key=lambda b: (b.bucket, b.topic))
        return out

    async def facets(self, query: str) -> Facets:
        return await self._run(self.facets_sync, query)

    def facets_sync(self, query: str) -> Facets:
        """Matches per topic, language and day in one aggregation. Sources are not a fast field
        (the source field holds dash-prefixes too), so each stored source is one count:
        its term, minus the longer sources that carry it as a prefix."""
        q = compile_query(self.schema, parse(query), self.clock())
        agg = {"topic": {"terms": {"field": "topics", "size": FACET_FETCH}},
               "language": {"terms": {"field": "lang", "size": FACET_FETCH}},
               "day": {"histogram": {"field": "published_us", "interval": _INTERVALS["day"],
                                     "min_doc_count": 1}}}
        try:
            searcher = self._searcher()
            result = searcher.aggregate(q, agg)
            by_source = {}
            lowered = {s.lower() for s in self.store.sources()}
            for s in sorted(self.store.sources()):
                low = s.lower()
                longer = [t for t in lowered if t != low and low in source_terms(t)]
                parts = [(Occur.Must, q), (Occur.Must, Query.term_query(self.schema, "source", low))]
                parts += [(Occur.MustNot, Query.term_query(self.schema, "source", t)) for t in longer]
                by_source[s] = searcher.search(Query.boolean_query(parts), 1, count=True).count
        except ValueError as e:
            log.debug("tantivy facets failed: %s", e)
            raise IndexError_("facets failed in the embedded index; `raqib index reindex` rebuilds it") from None
        day = {(_EPOCH + timedelta(microseconds=int(b["key"]))).strftime("%Y-%m-%d"): int(b["doc_count"])
               for b in result["day"]["buckets"]}
        return facet_lists({
            "topic": {b["key"]: int(b["doc_count"]) for b in result["topic"]["buckets"]},
            "language": {b["key"]: int(b["doc_count"]) for b in result["language"]["buckets"]},
            "source": by_source, "day": day})

    def count_sync(self) -> int:
        return self._searcher().num_docs

    async def count(self) -> int:
        return await self._run(self.count_sync)

    async def health(self) -> dict:
        return await self._run(self.health_sync)

    def health_sync(self) -> dict:
        """Checked, not assumed: the index answers a search, its directory takes writes (and
        the writer lock is held by someone alive), it holds what the store says it indexed,
        and the disk has room."""
        problems = []
        if self.ix is None:
            return {"status": "red", "problems": [f"cannot open the index: {self._broken} "
                                                  "(run `raqib index reindex`)"]}
        try:
            docs = self.count_sync()
            self._searcher().search(Query.all_query(), 1, count=False)
        except (ValueError, OSError) as e:
            return {"status": "red", "problems": [f"cannot read the index: {e}"]}
        try:
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=".raqib-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            problems.append(f"cannot write the index directory: {e}")
        writer = "this process" if self._writer is not None else "free"
        if self._writer is None:
            try:
                self._index().writer(heap_size=15_000_000, num_threads=1)  # dropped at once: lock released
            except ValueError as e:
                writer = "another process" if "LockBusy" in str(e) else "unavailable"
                if writer == "unavailable":
                    problems.append(f"cannot take the writer: {e}")
        marked, stored = self.store.index_counts()
        # Between the two, articles are waiting (an updated one is in the index and queued).
        if not marked <= docs <= stored:
            problems.append(f"the index holds {docs} documents, the store marks {marked} as indexed "
                            "(run `raqib index reindex`)")
        free = shutil.disk_usage(self.path).free
        if free < 100 * 1024**2:
            problems.append(f"only {free // 1024**2} MB free on the data dir's disk")
        return {"status": "yellow" if problems else "green", "documents": docs, "writer": writer,
                "disk_free_mb": free // 1024**2, "problems": problems}

    def close_sync(self) -> None:
        if self._writer is not None:
            try:
                self._writer.wait_merging_threads()
            except ValueError as e:  # pragma: no cover - merges failing at shutdown
                log.warning("search index merges did not finish: %s", e)
            self._writer = None
        self.store.close()

    async def close(self) -> None:
        await self._run(self.close_sync)
        self._pool.shutdown(wait=True)
