"""The durable store: one SQLite file (WAL) holding feed state, articles, queues and the outbox.

Everything the pipeline acknowledges is committed here first, in one transaction per feed
(articles + the feed's new validators), and flagged for the stages after it: `indexed = 0`
until the index confirms, `matched = 0` until the alert matcher has put its alerts in the
outbox (in the same transaction that clears the flag). A crash at any point therefore loses
nothing: on start-up the pending flags are simply worked off again.

Thread-safety: a Store is used from one thread at a time (the pipeline runs its calls on a
single-thread executor); SQLite's WAL lets the index and the CLI read concurrently.
All times are aware UTC datetimes in Python and ISO-8601 strings in the database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitor.models import Article, FeedState, Match

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    etag TEXT, last_modified TEXT,
    error_count INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    interval REAL, next_due TEXT, last_fetched TEXT, last_new TEXT
);
CREATE TABLE IF NOT EXISTS articles (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    link_key TEXT,
    feed_url TEXT NOT NULL, source TEXT NOT NULL,
    title TEXT NOT NULL, summary TEXT NOT NULL, content TEXT NOT NULL, link TEXT NOT NULL,
    published TEXT NOT NULL, fetched TEXT NOT NULL, language TEXT NOT NULL,
    topics TEXT NOT NULL, matches TEXT NOT NULL, content_hash TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    indexed INTEGER NOT NULL DEFAULT 0,
    matched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS articles_link ON articles(link_key);
CREATE INDEX IF NOT EXISTS articles_published ON articles(published);
CREATE INDEX IF NOT EXISTS articles_unindexed ON articles(indexed) WHERE indexed = 0;
CREATE INDEX IF NOT EXISTS articles_unmatched ON articles(matched) WHERE matched = 0;
CREATE TABLE IF NOT EXISTS article_topics (
    article INTEGER NOT NULL REFERENCES articles(rowid) ON DELETE CASCADE,
    topic TEXT NOT NULL, published TEXT NOT NULL,
    PRIMARY KEY (topic, article)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS article_topics_time ON article_topics(topic, published);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, query TEXT NOT NULL, channels TEXT NOT NULL,
    throttle_max INTEGER, throttle_per REAL, digest_minutes REAL NOT NULL DEFAULT 0,
    origin TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL, article_id TEXT NOT NULL, channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT,
    created REAL NOT NULL, sent REAL, message_id TEXT,
    UNIQUE (subscription_id, article_id, channel)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_attempt);
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox(subscription_id, channel, sent);
"""


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection tuned for a long-running writer with concurrent readers."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(frozen=True)
class IngestResult:
    new: tuple[Article, ...]
    updated: tuple[Article, ...]
    unchanged: int


ARTICLE_COLUMNS = ("id, feed_url, source, title, summary, content, link, published, fetched, "
                   "language, topics, matches")


def row_to_article(row: Sequence) -> Article:
    (aid, feed_url, source, title, summary, content, link, published, fetched, language, topics,
     matches) = row[:12]
    return Article(
        id=aid, feed_url=feed_url, source=source, title=title, summary=summary, content=content,
        link=link, published=from_iso(published), fetched=from_iso(fetched), language=language,
        topics=tuple(topics.split()) if topics else (),
        matches=tuple(Match(*m) for m in json.loads(matches)),
    )


class Store:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def worker_id(self) -> str:
        """A stable id for this installation (who claimed an alert on a shared cluster)."""
        import uuid

        with self._tx():
            self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('worker_id', ?)",
                              (uuid.uuid4().hex,))
        return self.conn.execute("SELECT value FROM meta WHERE key = 'worker_id'").fetchone()[0]

    # ---- transactions ----

    def _tx(self) -> _Tx:
        return _Tx(self.conn)

    # ---- feeds ----

    def feed_state(self, url: str) -> FeedState:
        row = self.conn.execute(
            "SELECT url, etag, last_modified, error_count, last_error, interval, next_due, "
            "last_fetched, last_new FROM feeds WHERE url = ?", (url,)).fetchone()
        if row is None:
            return FeedState(url)
        return FeedState(row[0], row[1], row[2], row[3], row[4], row[5], from_iso(row[6]),
                         from_iso(row[7]), from_iso(row[8]))

    def feed_states(self) -> dict[str, FeedState]:
        return {u: self.feed_state(u) for (u,) in self.conn.execute("SELECT url FROM feeds")}

    def _save_feed(self, st: FeedState) -> None:
        self.conn.execute(
            "INSERT INTO feeds (url, etag, last_modified, error_count, last_error, interval, "
            "next_due, last_fetched, last_new) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE "
            "SET etag=excluded.etag, last_modified=excluded.last_modified, "
            "error_count=excluded.error_count, last_error=excluded.last_error, "
            "interval=excluded.interval, next_due=excluded.next_due, "
            "last_fetched=excluded.last_fetched, last_new=excluded.last_new",
            (st.url, st.etag, st.last_modified, st.error_count, st.last_error, st.interval,
             iso(st.next_due) if st.next_due else None,
             iso(st.last_fetched) if st.last_fetched else None,
             iso(st.last_new) if st.last_new else None))

    def save_feed_state(self, st: FeedState) -> None:
        with self._tx():
            self._save_feed(st)

    # ---- articles ----

    def _lookup(self, key: str, value: str, wanted: Iterable[str]) -> dict[str, str]:
        """{key: value} for stored articles whose `key` column is among `wanted`."""
        keys = [k for k in wanted if k]
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[i:i + 500]
            q = f"SELECT {key}, {value} FROM articles WHERE {key} IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, chunk))
        return out

    def known(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> content hash for the ids already stored (the dedup decision's input)."""
        return self._lookup("id", "content_hash", ids)

    def ids_for_links(self, link_keys: Iterable[str]) -> dict[str, str]:
        """canonical link -> id of the article stored under it (cross-feed dedup)."""
        return self._lookup("link_key", "id", link_keys)

    def ingest(self, new: Sequence[Article], updated: Sequence[Article], link_keys: dict[str, str],
               feed_state: FeedState | None) -> None:
        """Store new and changed articles and the feed's state in one transaction."""
        with self._tx():
            for a in new:
                cur = self.conn.execute(
                    f"INSERT INTO articles ({ARTICLE_COLUMNS}, link_key, content_hash) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                    (*_article_values(a), link_keys.get(a.id), a.content_hash))
                if cur.rowcount:
                    self._set_topics(cur.lastrowid, a)
            for a in updated:
                self.conn.execute(
                    "UPDATE articles SET title=?, summary=?, content=?, link=?, language=?, "
                    "topics=?, matches=?, content_hash=?, version=version+1, indexed=0, matched=0 "
                    "WHERE id=?",
                    (a.title, a.summary, a.content, a.link, a.language, " ".join(a.topics),
                     _matches_json(a), a.content_hash, a.id))
                (rowid,) = self.conn.execute("SELECT rowid FROM articles WHERE id=?", (a.id,)).fetchone()
                self.conn.execute("DELETE FROM article_topics WHERE article=?", (rowid,))
                self._set_topics(rowid, a)
            if feed_state is not None:
                self._save_feed(feed_state)

    def _set_topics(self, rowid: int, a: Article) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO article_topics (article, topic, published) VALUES (?,?,?)",
            [(rowid, t, iso(a.published)) for t in a.topics])

    def get(self, article_id: str) -> Article | None:
        row = self.conn.execute(f"SELECT {ARTICLE_COLUMNS} FROM articles WHERE id=?",
                                (article_id,)).fetchone()
        return row_to_article(row) if row else None

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM articles").fetchone()[0]

    def pending(self, flag: str, limit: int = 500) -> list[tuple[int, Article]]:
        """Articles not yet indexed (flag='indexed') or matched (flag='matched'), oldest first."""
        assert flag in ("indexed", "matched")
        rows = self.conn.execute(
            f"SELECT rowid, version, {ARTICLE_COLUMNS} FROM articles WHERE {flag} = 0 "
            "ORDER BY rowid LIMIT ?", (limit,)).fetchall()
        return [((r[0], r[1]), row_to_article(r[2:])) for r in rows]  # type: ignore[misc]

    def mark(self, flag: str, keys: Iterable[tuple[int, int]]) -> None:
        """Clear a pending flag, unless the article changed (new version) meanwhile."""
        assert flag in ("indexed", "matched")
        with self._tx():
            self.conn.executemany(f"UPDATE articles SET {flag} = 1 WHERE rowid = ? AND version = ?",
                                  list(keys))

    def iter_articles(self, batch: int = 1000) -> Iterator[list[Article]]:
        last = 0
        while True:
            rows = self.conn.execute(
                f"SELECT rowid, {ARTICLE_COLUMNS} FROM articles WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [row_to_article(r[1:]) for r in rows]


def _matches_json(a: Article) -> str:
    return json.dumps([[m.topic, m.start, m.end, m.text] for m in a.matches], ensure_ascii=False)


def _article_values(a: Article) -> tuple:
    return (a.id, a.feed_url, a.source, a.title, a.summary, a.content, a.link, iso(a.published),
            iso(a.fetched), a.language, " ".join(a.topics), _matches_json(a))


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error; nests by doing nothing inside."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.outer = False

    def __enter__(self) -> _Tx:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def now_ts() -> float:
    return time.time()
