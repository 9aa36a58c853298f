"""The embedded index: SQLite FTS5 inside the store's own database file, no server needed.

Each token is indexed under every reading of its proclitics (monitor.arabic.forms), so the
FTS5 term lookup of a query word is exact: الناتو finds للناتو and بالناتو. Phrases are found
by FTS5 (all words present) and then verified word-by-word by a SQL function using the same
analysis as the alert matcher, so search and alerts agree on every article.

FTS5 never tokenizes text itself: it is given the analyzer's keys joined by spaces, and its
`ascii` tokenizer splits only on ASCII non-alphanumerics (here: the spaces) and keeps every
non-ASCII character, so each FTS5 term IS one analyzer key, byte for byte (keys contain only
word characters, lower-cased). The FTS5 term set equals the matcher's key set by construction,
not because two tokenizers happen to agree (unicode61 split #قمة_لاهاي, the analyzer did not).

SQLite's own messages never reach a user: limits in monitor.query keep FTS5 expressions small,
and any sqlite3 error becomes a Raqib error naming what to do.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from indexers.base import TrendBucket
from monitor.arabic import index_terms, normalize
from monitor.errors import IndexError_, QueryError
from monitor.highlight import highlight, snippet
from monitor.models import Article, SearchHit, SearchPage, body_of
from monitor.query import (And, Clock, DateRange, Lang, Node, Not, Or, Phrase, Source, Term, Topic,
                           parse, phrase_in_text, positive_keys, utcnow)
from monitor.store import ARTICLE_COLUMNS, Store, connect, iso, row_to_article

log = logging.getLogger(__name__)

FTS_TOKENIZER = "ascii"
FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS articles_fts USING fts5(
    title, body, tokenize = "{FTS_TOKENIZER}"
);
"""
MAX_OFFSET = 1_000_000
MAX_LIMIT = 100_000
_COLS = {"any": "", "title": "title : ", "body": "body : "}


def _fts_term(t: Term) -> str:
    return f'{_COLS[t.field]}"{t.key}"'


def fts_expr(node: Node) -> str | None:
    """An exact FTS5 expression for `node`, or None when FTS5 alone cannot decide it."""
    match node:
        case Term():
            return _fts_term(node)
        case Or(children=cs):
            parts = [fts_expr(c) for c in cs]
            return None if None in parts else "(" + " OR ".join(parts) + ")"  # type: ignore[arg-type]
        case And(children=cs):
            pos, neg = [], []
            for c in cs:
                if isinstance(c, Not):
                    e = fts_expr(c.child)
                    if e is None:
                        return None
                    neg.append(e)
                else:
                    e = fts_expr(c)
                    if e is None:
                        return None
                    pos.append(e)
            if not pos:
                return None
            expr = "(" + " AND ".join(pos) + ")"
            return expr + "".join(f" NOT {n}" for n in neg)
    return None


def requires_text(node: Node) -> bool:
    """True when every matching article contains at least one positive query word."""
    match node:
        case Term() | Phrase():
            return True
        case And(children=cs):
            return any(requires_text(c) for c in cs)
        case Or(children=cs):
            return all(requires_text(c) for c in cs)
    return False


@dataclass
class _Sql:
    params: list
    now: datetime

    def compile(self, node: Node) -> str:
        expr = fts_expr(node)
        if expr is not None:
            self.params.append(expr)
            return "a.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)"
        match node:
            case Phrase(keys=keys, field=field):
                col = _COLS[field]
                self.params.append(" AND ".join(f'{col}"{k}"' for k in keys))
                self.params += ["\x1f".join(keys), field]
                return ("(a.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?) "
                        "AND raqib_phrase(a.title, a.summary, a.content, ?, ?))")
            case Topic(id=tid):
                self.params.append(tid)
                return "a.rowid IN (SELECT article FROM article_topics WHERE topic = ?)"
            case Source(id=sid):
                self.params += [sid, sid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"]
                return "(lower(a.source) = ? OR lower(a.source) LIKE ? ESCAPE '\\')"
            case Lang(code=code):
                self.params.append(code)
                return "a.language = ?"
            case DateRange():
                start, end = node.bounds(self.now)
                conds = []
                if start is not None:
                    conds.append("a.published >= ?")
                    self.params.append(iso(start))
                if end is not None:
                    conds.append("a.published < ?")
                    self.params.append(iso(end))
                return "(" + " AND ".join(conds or ["1"]) + ")"
            case And(children=cs):
                # Words combined into one FTS5 lookup are much cheaper than one lookup each.
                words = [c for c in cs if fts_expr(c) is not None and not isinstance(c, Not)]
                rest = [c for c in cs if c not in words]
                parts = []
                if len(words) > 1:
                    parts.append(self.compile(And(tuple(words))))
                else:
                    rest = list(cs)
                parts += [self.compile(c) for c in rest]
                return "(" + " AND ".join(parts) + ")"
            case Or(children=cs):
                return "(" + " OR ".join(self.compile(c) for c in cs) + ")"
            case Not(child=c):
                return f"NOT {self.compile(c)}"
        raise QueryError(f"cannot compile {node!r}")


def compile_where(node: Node, now: datetime | None = None) -> tuple[str, list]:
    """SQL condition and parameters for `node`; relative dates resolved at `now`."""
    sql = _Sql([], now or datetime.now(UTC))
    return sql.compile(node), sql.params


def rank_expr(node: Node) -> str | None:
    keys = sorted(positive_keys(node))
    return " OR ".join(f'"{k}"' for k in keys) if keys else None


def _phrase_udf(title: str, summary: str, content: str, keys: str, field: str) -> int:
    ks = tuple(keys.split("\x1f"))
    if field != "body" and phrase_in_text(normalize(title), ks):
        return 1
    if field != "title":
        return int(phrase_in_text(normalize(body_of(summary, content)), ks))
    return 0


def _cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, value = cursor.split(":", 1)
        if kind != "o":
            raise ValueError
        if not value.isdigit() or len(value) > 7 or int(value) > MAX_OFFSET:
            raise ValueError
        return int(value)
    except ValueError:
        raise QueryError(f"invalid cursor {cursor[:40]!r}") from None


def _sqlite_failure(what: str, e: sqlite3.Error) -> Exception:
    """A Raqib error for a failed read; SQLite's wording goes to the log, not to the user."""
    log.debug("%s failed in SQLite: %s", what, e)
    text = str(e).lower()
    if "locked" in text or "busy" in text:
        return IndexError_(f"{what}: the database is busy (another process is writing); try again")
    if "fts5" in text or "expression" in text or "too" in text or "syntax" in text:
        return QueryError(f"{what}: the query is too complex for the embedded index; simplify it")
    return IndexError_(f"{what} failed in the embedded index; `raqib index reindex` rebuilds it")


class SqliteIndex:
    """ArticleIndex over the store's database (see indexers.base for the contract)."""

    def __init__(self, db_path: Path | str, clock: Clock = utcnow):
        self.db_path = Path(db_path)
        self.clock = clock  # what "now" is for relative dates (date:24h)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raqib-index")
        self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = connect(self.db_path)
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'articles_fts'").fetchone()
        if row is not None and f'tokenize = "{FTS_TOKENIZER}"' not in row[0]:
            # An index built by another tokenizer disagrees with the analyzer: rebuild it from
            # the store (every article goes back on the index queue).
            # Requeue first: a crash in between leaves the old table, found and dropped next time.
            log.warning("rebuilding the search index: its tokenizer changed")
            store = Store(self.db_path)
            store.requeue_for_index()
            store.close()
            conn.execute("DROP TABLE articles_fts")
        conn.executescript(FTS_SCHEMA)
        conn.create_function("raqib_phrase", 5, _phrase_udf, deterministic=True)
        return conn

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---- writing ----

    async def index(self, articles: Sequence[Article]) -> None:
        await self._run(self.index_sync, articles)

    def index_sync(self, articles: Sequence[Article]) -> None:
        rows = []
        for a in articles:
            rows.append((a.id, index_terms(a.title), index_terms(a.body)))
        try:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for aid, title, body in rows:
                    r = c.execute("SELECT rowid FROM articles WHERE id = ?", (aid,)).fetchone()
                    if r is None:
                        raise IndexError_(f"article {aid} is not in the store")
                    c.execute("DELETE FROM articles_fts WHERE rowid = ?", r)
                    c.execute("INSERT INTO articles_fts (rowid, title, body) VALUES (?,?,?)",
                              (r[0], title, body))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise IndexError_(f"{self.db_path}: indexing failed: {e}") from e

    # ---- reading ----

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
        where, params = compile_where(node, self.clock())
        offset = _cursor_offset(cursor)
        try:
            return self._search(node, where, params, limit, offset, sort)
        except sqlite3.Error as e:
            raise _sqlite_failure("search", e) from None

    def _search(self, node: Node, where: str, params: list, limit: int, offset: int,
                sort: str) -> SearchPage:
        rank = rank_expr(node)
        if rank and requires_text(node):
            source = ("(SELECT rowid AS rid, bm25(articles_fts, 3.0, 1.0) AS score FROM articles_fts "
                      "WHERE articles_fts MATCH ?) r JOIN articles a ON a.rowid = r.rid")
            params = [rank, *params]
        elif rank:
            source = ("articles a LEFT JOIN (SELECT rowid AS rid, bm25(articles_fts, 3.0, 1.0) AS score "
                      "FROM articles_fts WHERE articles_fts MATCH ?) r ON r.rid = a.rowid")
            params = [rank, *params]
        else:
            source = "articles a LEFT JOIN (SELECT NULL AS rid, 0.0 AS score) r ON 0"
        order = "a.published DESC" if sort == "date" or not rank else "coalesce(r.score, 0), a.published DESC"
        # Two steps: rank and count with nothing but rowids and scores (so SQLite never builds
        # or sorts the full text of every match), then read the page's rows.
        sql = (f"SELECT a.rowid, coalesce(r.score, 0), count(*) OVER () FROM {source} "
               f"WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?")
        ranked = self.conn.execute(sql, [*params, limit, offset]).fetchall()
        cols = ", ".join(ARTICLE_COLUMNS.split(","))
        by_rowid = {r[0]: r[1:] for r in self.conn.execute(
            f"SELECT rowid, {cols} FROM articles WHERE rowid IN ({','.join('?' * len(ranked))})",
            [r[0] for r in ranked])} if ranked else {}
        rows = [(*by_rowid[r[0]], r[1], r[2]) for r in ranked if r[0] in by_rowid]
        keys = positive_keys(node)
        hits = []
        for row in rows:
            art = row_to_article(row)
            hits.append(SearchHit(
                article=art, score=-float(row[12]),
                highlights={"title": highlight(art.title, keys)},
                snippet=snippet(art.body, keys)))
        total = rows[0][13] if rows else 0
        if not rows and offset:
            total = self.conn.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone()[0]
        nxt = f"o:{offset + limit}" if offset + limit < total else None
        return SearchPage(total=total, hits=tuple(hits), next_cursor=nxt)

    async def trends(self, query: str | None = None, *, interval: Literal["hour", "day"] = "day",
                     start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]:
        return await self._run(self.trends_sync, query, interval, start, end)

    def trends_sync(self, query: str | None = None, interval: str = "day",
                    start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]:
        width = {"hour": 13, "day": 10}[interval]
        conds, params = [], []
        if start:
            conds.append("t.published >= ?")
            params.append(iso(start))
        if end:
            conds.append("t.published < ?")
            params.append(iso(end))
        if query:
            where, qp = compile_where(parse(query), self.clock())
            conds.append(f"t.article IN (SELECT a.rowid FROM articles a WHERE {where})")
            params += qp
        sql = (f"SELECT substr(t.published, 1, {width}) AS b, t.topic, count(*) FROM article_topics t "
               f"{'WHERE ' + ' AND '.join(conds) if conds else ''} GROUP BY b, t.topic ORDER BY b, t.topic")
        out = []
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _sqlite_failure("trends", e) from None
        for b, topic, n in rows:
            fmt = "%Y-%m-%dT%H" if interval == "hour" else "%Y-%m-%d"
            out.append(TrendBucket(datetime.strptime(b, fmt).replace(tzinfo=UTC), topic, n))
        return out

    async def count(self) -> int:
        return await self._run(lambda: self.conn.execute("SELECT count(*) FROM articles_fts").fetchone()[0])

    async def health(self) -> dict:
        return await self._run(self.health_sync)

    def health_sync(self) -> dict:
        """Checked, not assumed: the file answers reads and takes a write lock, the index holds
        what the store says it indexed, and the disk has room."""
        import shutil

        problems = []
        try:
            docs = self.conn.execute("SELECT count(*) FROM articles_fts").fetchone()[0]
            marked, stored = self.conn.execute(
                "SELECT count(*) FILTER (WHERE indexed = 1), count(*) FROM articles").fetchone()
        except sqlite3.Error as e:
            return {"status": "red", "problems": [f"cannot read the index: {e}"]}
        # Between the two, articles are waiting (an updated one is in the index and queued).
        if not marked <= docs <= stored:
            problems.append(f"the index holds {docs} documents, the store marks {marked} as indexed "
                            "(run `raqib index reindex`)")
        old = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        try:
            self.conn.execute("PRAGMA busy_timeout = 1000")
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            problems.append(f"cannot take the write lock: {e}")
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(old)}")
        free = shutil.disk_usage(self.db_path.parent).free
        if free < 100 * 1024**2:
            problems.append(f"only {free // 1024**2} MB free on the data dir's disk")
        return {"status": "yellow" if problems else "green", "documents": docs,
                "disk_free_mb": free // 1024**2, "problems": problems}

    async def close(self) -> None:
        await self._run(self.conn.close)
        self._pool.shutdown(wait=True)
