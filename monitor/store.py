"""The durable store: one SQLite file (WAL) holding feed state, articles, queues and the outbox.

Everything the pipeline acknowledges is committed here first, in one transaction per feed
(articles + the feed's new validators), and flagged for the stages after it: `indexed = 0`
until the index confirms, `matched = 0` until the alert matcher has put its alerts in the
outbox (in the same transaction that clears the flag). A crash at any point therefore loses
nothing: on start-up the pending flags are simply worked off again.

Thread-safety: a Store is used from one thread at a time (the pipeline runs its calls on a
single-thread executor); SQLite's WAL lets the index and the CLI read concurrently.
All times are aware UTC datetimes in Python and ISO-8601 strings in the database.

This module owns every SQL statement against the store (alerts.outbox and
alerts.subscriptions call the methods here): the schema has one version number
(`PRAGMA user_version`) and the migrations below bring any older file up to it on open.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


# Each migration takes the schema from version i to i + 1 (index i); files made before
# versioning (user_version 0, SCHEMA above) start at 0.
MIGRATIONS: tuple[str, ...] = (
    # 1: outbox leases, index dead-letters, back-catalogue flags, feed seeding.
    """
    ALTER TABLE articles ADD COLUMN stored REAL NOT NULL DEFAULT 0;
    ALTER TABLE articles ADD COLUMN backfill INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE articles ADD COLUMN index_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE articles ADD COLUMN index_error TEXT;
    ALTER TABLE feeds ADD COLUMN seeded INTEGER NOT NULL DEFAULT 0;
    UPDATE feeds SET seeded = 1 WHERE etag IS NOT NULL OR last_modified IS NOT NULL
        OR last_new IS NOT NULL OR url IN (SELECT feed_url FROM articles);
    ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
    ALTER TABLE outbox ADD COLUMN lease_expires REAL NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN backfill INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN created_ts REAL NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS articles_dead ON articles(indexed) WHERE indexed = 2;
    """,
    # 2 (sources): feeds managed in the database (feeds.yaml's marked origin 'file'), paused
    # subscriptions, and an outbox index by article (retention deletes a deleted article's alerts).
    """
    CREATE TABLE IF NOT EXISTS feed_list (
        id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '', interval REAL, enabled INTEGER NOT NULL DEFAULT 1,
        origin TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
    );
    ALTER TABLE subscriptions ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS outbox_article ON outbox(article_id);
    CREATE INDEX IF NOT EXISTS articles_fetched ON articles(fetched);
    ALTER TABLE feeds ADD COLUMN last_status INTEGER;
    ALTER TABLE feeds ADD COLUMN last_items INTEGER;
    """,
    # 3 (api): API tokens (raqib.web.tokens): only a hash of each token is kept; the source index makes
    # the list of stored sources (facets, query checks) an index scan, not a table scan.
    """
    CREATE INDEX IF NOT EXISTS articles_source ON articles(source);
    CREATE TABLE IF NOT EXISTS api_tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL, last_used REAL, revoked REAL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
SEEN_EVERY = 3600.0  # seconds: how stale an article's `fetched` may get while its feed carries it
INDEX_DEAD = 2  # `indexed` value of an article the index refused MAX_INDEX_ATTEMPTS times


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(s: str | None) -> datetime | None:
    """What iso() wrote; fromisoformat is C, strptime ~30x slower (every drain reads two per row)."""
    if not s:
        return None
    try:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    except ValueError:
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
        self._migrate()

    def _migrate(self) -> None:
        """Create or upgrade the schema; safe when several processes open one file at once."""
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._tx():  # BEGIN IMMEDIATE: one process migrates, the others wait and see it done
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                from monitor.errors import RaqibError

                raise RaqibError(f"{self.path} was written by a newer Raqib (schema {version}, "
                                 f"this one knows {SCHEMA_VERSION}); upgrade Raqib")
            for stmt in _statements(SCHEMA):
                self.conn.execute(stmt)
            for script in MIGRATIONS[version:]:
                for stmt in _statements(script):
                    self.conn.execute(stmt)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
            "last_fetched, last_new, seeded, last_status, last_items FROM feeds WHERE url = ?", (url,)).fetchone()
        if row is None:
            return FeedState(url)
        return FeedState(row[0], row[1], row[2], row[3], row[4], row[5], from_iso(row[6]),
                         from_iso(row[7]), from_iso(row[8]), bool(row[9]), row[10], row[11])

    def feed_states(self) -> dict[str, FeedState]:
        return {u: self.feed_state(u) for (u,) in self.conn.execute("SELECT url FROM feeds")}

    def _save_feed(self, st: FeedState) -> None:
        self.conn.execute(
            "INSERT INTO feeds (url, etag, last_modified, error_count, last_error, interval, "
            "next_due, last_fetched, last_new, seeded, last_status, last_items) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(url) "
            "DO UPDATE SET etag=excluded.etag, last_modified=excluded.last_modified, "
            "error_count=excluded.error_count, last_error=excluded.last_error, "
            "interval=excluded.interval, next_due=excluded.next_due, "
            "last_fetched=excluded.last_fetched, last_new=excluded.last_new, "
            "seeded=max(seeded, excluded.seeded), last_status=excluded.last_status, "
            "last_items=coalesce(excluded.last_items, last_items)",
            (st.url, st.etag, st.last_modified, st.error_count, st.last_error, st.interval,
             iso(st.next_due) if st.next_due else None,
             iso(st.last_fetched) if st.last_fetched else None,
             iso(st.last_new) if st.last_new else None, int(st.seeded), st.last_status, st.last_items))

    def save_feed_state(self, st: FeedState) -> None:
        with self._tx():
            self._save_feed(st)

    # ---- the feed list (monitor.feedlist decides; this stores) ----

    FEED_LIST_COLUMNS = "id, url, name, language, interval, enabled, origin, created, updated"

    def feed_list_rows(self) -> list[tuple]:
        """Every listed feed in FEED_LIST_COLUMNS order, by id."""
        return self.conn.execute(f"SELECT {self.FEED_LIST_COLUMNS} FROM feed_list ORDER BY id").fetchall()

    def save_feed_entries(self, rows: Sequence[Sequence], remove: Iterable[str] = ()) -> None:
        """Insert or replace listed feeds (by id; `created` is kept) and remove the ids in
        `remove`, in one transaction that bumps the feed list's version."""
        now = time.time()
        with self._tx():
            for i in remove:
                self.conn.execute("DELETE FROM feed_list WHERE id = ?", (i,))
            for r in rows:
                self.conn.execute("DELETE FROM feed_list WHERE url = ? AND id != ?", (r[1], r[0]))
                self.conn.execute(
                    f"INSERT INTO feed_list ({self.FEED_LIST_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET url=excluded.url, name=excluded.name, "
                    "language=excluded.language, interval=excluded.interval, enabled=excluded.enabled, "
                    "origin=excluded.origin, updated=excluded.updated", (*r[:7], now, now))
            self._bump("feeds_version")

    def _bump(self, key: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, '1') "
                          "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", (key,))

    def meta_value(self, key: str) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else "0"

    def articles_per_feed(self) -> dict[str, int]:
        """feed url -> articles stored from it."""
        return dict(self.conn.execute("SELECT feed_url, count(*) FROM articles GROUP BY feed_url"))

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
               feed_state: FeedState | None, backfill: bool = False, seen: Iterable[str] = (),
               seen_at: datetime | None = None) -> None:
        """Store new and changed articles and the feed's state in one transaction.

        `backfill` marks new articles as a feed's back catalogue (found on its first successful
        fetch): stored, indexed and searchable, but they alert only where a subscription asks.
        `seen`: stored articles the feed still carries; their `fetched` moves to `seen_at`
        (at most once per SEEN_EVERY, each is a row write) so retention keeps them: deleted,
        the next poll would store them anew."""
        with self._tx():
            if seen_at is not None:
                ids, at = list(seen), iso(seen_at)
                before = iso(seen_at - timedelta(seconds=SEEN_EVERY))
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    self.conn.execute(f"UPDATE articles SET fetched = ? WHERE fetched < ? AND id IN "
                                      f"({','.join('?' * len(chunk))})", (at, before, *chunk))
            # Stamped inside the write lock, as subscriptions are: transactions are serialized,
            # so a subscription saved while this ingest waited counts as older than its articles.
            stored = time.time()
            for a in new:
                cur = self.conn.execute(
                    f"INSERT INTO articles ({ARTICLE_COLUMNS}, link_key, content_hash, stored, backfill) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                    (*_article_values(a), link_keys.get(a.id), a.content_hash, stored, int(backfill)))
                if cur.rowcount:
                    self._set_topics(cur.lastrowid, a)
            for a in updated:
                self.conn.execute(
                    "UPDATE articles SET title=?, summary=?, content=?, link=?, language=?, "
                    "topics=?, matches=?, content_hash=?, version=version+1, indexed=0, matched=0, "
                    "index_attempts=0, index_error=NULL "
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

    def max_rowid(self) -> int:
        return self.conn.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]

    def sources(self) -> list[str]:
        """The feed ids that stored articles came from."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT source FROM articles")]

    def pending(self, flag: str, limit: int = 500, after: int = 0, upto: int | None = None) -> list[Pending]:
        """Articles not yet indexed (flag='indexed') or matched (flag='matched'), oldest first,
        one page after rowid `after` (a drain pages through, so a refused article never
        holds up the ones behind it), and not past rowid `upto` when given."""
        assert flag in ("indexed", "matched")
        rows = self.conn.execute(
            f"SELECT rowid, version, stored, backfill, {ARTICLE_COLUMNS} FROM articles "
            f"WHERE {flag} = 0 AND rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (after, upto if upto is not None else 2**63 - 1, limit)).fetchall()
        return [Pending((r[0], r[1]), row_to_article(r[4:]), r[2], bool(r[3])) for r in rows]

    def mark(self, flag: str, keys: Iterable[tuple[int, int]]) -> None:
        """Clear a pending flag, unless the article changed (new version) meanwhile."""
        assert flag in ("indexed", "matched")
        with self._tx():
            self.conn.executemany(f"UPDATE articles SET {flag} = 1 WHERE rowid = ? AND version = ?",
                                  list(keys))

    def index_refused(self, refused: Iterable[tuple[tuple[int, int], str]], max_attempts: int) -> int:
        """Count a refusal per article; after `max_attempts` it becomes a dead letter (shown by
        `raqib index status`, retried by `raqib index reindex`). Returns the new dead letters."""
        dead = 0
        with self._tx():
            for (rowid, version), error in refused:
                cur = self.conn.execute(
                    "UPDATE articles SET index_attempts = index_attempts + 1, index_error = ?, "
                    "indexed = CASE WHEN index_attempts + 1 >= ? THEN ? ELSE indexed END "
                    "WHERE rowid = ? AND version = ? RETURNING indexed", (error[:1000], max_attempts,
                                                                       INDEX_DEAD, rowid, version))
                row = cur.fetchone()
                dead += bool(row and row[0] == INDEX_DEAD)
        return dead

    def queue_counts(self) -> dict[str, int]:
        """Articles waiting for the index and the matcher, and the index's dead letters."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM articles WHERE indexed = 0), "
            "(SELECT count(*) FROM articles WHERE matched = 0), "
            f"(SELECT count(*) FROM articles WHERE indexed = {INDEX_DEAD})").fetchone()
        return {"waiting_to_index": row[0], "waiting_to_match": row[1], "index_dead_letters": row[2]}

    def dead_letters(self, limit: int = 20) -> list[tuple[str, str, int]]:
        """(article id, last index error, attempts) of the articles the index keeps refusing."""
        return self.conn.execute(
            f"SELECT id, coalesce(index_error, ''), index_attempts FROM articles WHERE indexed = {INDEX_DEAD} "
            "ORDER BY rowid LIMIT ?", (limit,)).fetchall()

    def requeue_for_index(self) -> int:
        """Put every article back in the index queue (reindex), dead letters included."""
        with self._tx():
            return self.conn.execute(
                "UPDATE articles SET indexed = 0, index_attempts = 0, index_error = NULL").rowcount


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


    # ---- subscriptions (alerts.subscriptions turns rows into Subscriptions) ----

    SUBSCRIPTION_COLUMNS = ("id, name, query, channels, throttle_max, throttle_per, digest_minutes, "
                            "origin, backfill, created_ts")

    def save_subscription(self, row: Sequence) -> None:
        """Insert or update one subscription; its creation time is kept on update."""
        self.save_subscriptions([row])

    def save_subscriptions(self, rows: Iterable[Sequence]) -> None:
        """Insert or update subscriptions in one transaction (alerts.yaml's 100k at start is
        one commit, not 100k), bumping the change counter once.

        A new row without a creation time (last column 0) is stamped inside the write lock, so
        against articles stored concurrently the order of stamps is the order of commits."""
        with self._tx():
            now, stamp = time.time(), iso(datetime.now(UTC))
            self.conn.executemany(
                f"INSERT INTO subscriptions ({self.SUBSCRIPTION_COLUMNS}, created) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "name=excluded.name, query=excluded.query, channels=excluded.channels, "
                "throttle_max=excluded.throttle_max, throttle_per=excluded.throttle_per, "
                "digest_minutes=excluded.digest_minutes, origin=excluded.origin, "
                "backfill=excluded.backfill",
                [(*row[:-1], row[-1] or now, stamp) for row in rows])
            self._bump_subscriptions()

    def remove_subscriptions(self, ids: Iterable[str]) -> int:
        with self._tx():
            gone = sum(self.conn.execute("DELETE FROM subscriptions WHERE id=?", (i,)).rowcount for i in ids)
            if gone:
                self._bump_subscriptions()
            return gone

    def remove_subscription(self, sub_id: str) -> bool:
        with self._tx():
            gone = self.conn.execute("DELETE FROM subscriptions WHERE id=?", (sub_id,)).rowcount > 0
            if gone:
                self._bump_subscriptions()
            return gone

    def _bump_subscriptions(self) -> None:
        self._bump("subscriptions_version")

    def subscription_rows(self, ids: Iterable[str] | None = None) -> list[tuple]:
        """Rows in SUBSCRIPTION_COLUMNS order, then `paused`; created_ts is filled from
        `created` for rows written before schema 1."""
        if ids is None:
            rows = self.conn.execute(f"SELECT {self.SUBSCRIPTION_COLUMNS}, created, paused FROM subscriptions "
                                     "ORDER BY id").fetchall()
        else:
            wanted, rows = list(ids), []
            for i in range(0, len(wanted), 500):  # SQLite caps bound parameters
                chunk = wanted[i:i + 500]
                rows += self.conn.execute(f"SELECT {self.SUBSCRIPTION_COLUMNS}, created, paused FROM subscriptions "
                                          f"WHERE id IN ({','.join('?' * len(chunk))}) ORDER BY id", chunk).fetchall()
        out = []
        for r in rows:
            created = r[9] or (from_iso(r[10]).timestamp() if r[10] else 0.0)  # type: ignore[union-attr]
            out.append((*r[:9], created, bool(r[11])))
        return out

    def set_subscription_paused(self, sub_id: str, paused: bool) -> bool:
        """Pause or resume one subscription; False when there is none with this id."""
        with self._tx():
            done = self.conn.execute("UPDATE subscriptions SET paused = ? WHERE id = ?",
                                     (int(paused), sub_id)).rowcount > 0
            if done:
                self._bump_subscriptions()
            return done

    def subscription_outbox(self, sub_id: str, limit: int = 50) -> list[tuple]:
        """The delivery log of one subscription, newest first: (article, channel, status,
        attempts, last error, created, sent)."""
        return self.conn.execute(
            "SELECT article_id, channel, status, attempts, last_error, created, sent FROM outbox "
            "WHERE subscription_id = ? ORDER BY id DESC LIMIT ?", (sub_id, limit)).fetchall()

    def subscriptions_version(self) -> tuple:
        """Changes whenever a subscription is added, changed or removed (a counter every write
        bumps in its own transaction: cheap to poll, and no two states can look alike)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'subscriptions_version'").fetchone()
        return (row[0] if row else "0",)

    # ---- outbox (alerts.outbox and alerts.delivery decide; this stores) ----
    # Rows are leased before they are sent: a claim sets (owner, expiry) in one transaction,
    # every later write checks the owner, and a crashed owner's lease simply runs out.

    def enqueue_alerts(self, rows: Iterable[tuple[str, str, str, str, str]],
                       matched_keys: Iterable[tuple[int, int]], now: float) -> int:
        """Add (delivery id, subscription, article, channel, payload) rows and clear the
        articles' `matched` flag in one transaction; returns the rows actually added."""
        added = 0
        with self._tx():
            for delivery, sub, article, channel, payload in rows:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO outbox (delivery_id, subscription_id, article_id, channel, "
                    "payload, next_attempt, created) VALUES (?,?,?,?,?,?,?)",
                    (delivery, sub, article, channel, payload, now, now))
                added += cur.rowcount
            self.conn.executemany("UPDATE articles SET matched = 1 WHERE rowid = ? AND version = ?",
                                  list(matched_keys))
        return added

    def claim_outbox(self, owner: str, now: float, lease: float, limit: int = 500) -> list[tuple]:
        """Lease up to `limit` due rows to `owner`: (id, subscription, channel, attempts,
        created, payload). A row leased to someone else is skipped until the lease expires."""
        with self._tx():
            return self.conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_expires = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ? "
                " AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY id LIMIT ?) "
                "RETURNING id, subscription_id, channel, attempts, created, payload",
                (owner, now + lease, now, now, limit)).fetchall()

    def claim_outbox_group(self, owner: str, subscription_id: str, channel: str, now: float,
                           lease: float) -> list[tuple]:
        """Lease every pending row of one (subscription, channel) not leased by someone else."""
        with self._tx():
            return self.conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_expires = ? WHERE subscription_id = ? AND channel = ? "
                "AND status = 'pending' AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?) "
                "RETURNING id, subscription_id, channel, attempts, created, payload",
                (owner, now + lease, subscription_id, channel, owner, now)).fetchall()

    def renew_lease(self, ids: Sequence[int], owner: str, until: float) -> bool:
        """Extend the lease right before a send; False when any row is no longer ours.

        All or nothing: when part of a message's rows were lost, the message is not sent, so
        the rows still ours are let go at once instead of idling out a fresh lease."""
        with self._tx():
            n = sum(self.conn.execute(
                "UPDATE outbox SET lease_expires = ? WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                (until, i, owner)).rowcount for i in ids)
            if n != len(ids):
                self.conn.executemany(
                    "UPDATE outbox SET lease_owner = NULL, lease_expires = 0 WHERE id = ? AND lease_owner = ?",
                    [(i, owner) for i in ids])
        return n == len(ids)

    def outbox_sent(self, ids: Sequence[int], owner: str, now: float, message_id: str) -> None:
        """Record that one message (a single alert or a digest) carried these rows."""
        with self._tx():
            self.conn.executemany(
                "UPDATE outbox SET status = 'sent', sent = ?, message_id = ?, attempts = attempts + 1, "
                "last_error = NULL, lease_owner = NULL, lease_expires = 0 WHERE id = ? AND lease_owner = ?",
                [(now, message_id, i, owner) for i in ids])

    def outbox_failed(self, ids: Sequence[int], owner: str, error: str, next_attempt: float) -> None:
        with self._tx():
            self.conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?, "
                "lease_owner = NULL, lease_expires = 0 WHERE id = ? AND lease_owner = ?",
                [(error[:1000], next_attempt, i, owner) for i in ids])

    def outbox_postpone(self, ids: Sequence[int], owner: str, until: float) -> None:
        """Give rows back, due again at `until` (throttle window, digest, channel back-off)."""
        with self._tx():
            self.conn.executemany(
                "UPDATE outbox SET next_attempt = ?, lease_owner = NULL, lease_expires = 0 "
                "WHERE id = ? AND lease_owner = ?", [(until, i, owner) for i in ids])

    def release_leases(self, owner: str | None) -> int:
        """Hand back every row `owner` still holds (a clean shutdown); with None, every lease
        (the holder of the data-dir lock is the only sender, so leases it finds are a dead
        process's and need not run out first)."""
        with self._tx():
            return self.conn.execute("UPDATE outbox SET lease_owner = NULL, lease_expires = 0 "
                                     "WHERE lease_owner IS NOT NULL AND (? IS NULL OR lease_owner = ?) "
                                     "AND status = 'pending'", (owner, owner)).rowcount

    def outbox_group_opened(self, subscription_id: str, channel: str) -> float | None:
        """When the oldest alert still waiting for a (subscription, channel) was queued."""
        return self.conn.execute(
            "SELECT min(created) FROM outbox WHERE subscription_id = ? AND channel = ? AND status = 'pending'",
            (subscription_id, channel)).fetchone()[0]

    def messages_sent_since(self, subscription_id: str, channel: str, since: float) -> list[float]:
        """Send times of the messages (a digest counts once) a subscription sent on a channel."""
        return [r[0] for r in self.conn.execute(
            "SELECT min(sent) FROM outbox WHERE subscription_id = ? AND channel = ? AND sent >= ? "
            "GROUP BY message_id ORDER BY 1", (subscription_id, channel, since))]

    def outbox_backlog(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())

    def outbox_rows(self) -> list[tuple]:
        """(delivery id, subscription, article, channel, status, attempts, last error, sent) of
        every row, oldest first: for tests and `raqib` diagnostics."""
        return self.conn.execute(
            "SELECT delivery_id, subscription_id, article_id, channel, status, attempts, last_error, sent "
            "FROM outbox ORDER BY id").fetchall()

    # ---- the web side (raqib.web.queries) ----

    OUTBOX_STATES = {"pending": "status = 'pending' AND last_error IS NULL",
                     "failed": "status = 'pending' AND last_error IS NOT NULL",
                     "sent": "status = 'sent'", "all": "1"}

    def outbox_page(self, state: str, limit: int, before: int | None = None,
                    subscription: str | None = None) -> list[tuple]:
        """(id, delivery id, subscription, article, channel, status, attempts, last error,
        next attempt, created, sent) newest first; `failed` = still pending after an error;
        `subscription` keeps one subscription's alerts only."""
        only = "AND subscription_id = ? " if subscription is not None else ""
        args = (before if before is not None else 2**63 - 1,) + ((subscription,) if subscription is not None else ())
        return self.conn.execute(
            "SELECT id, delivery_id, subscription_id, article_id, channel, status, attempts, last_error, "
            f"next_attempt, created, sent FROM outbox WHERE {self.OUTBOX_STATES[state]} AND id < ? {only}"
            "ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()

    def outbox_retry(self, ids: Sequence[int] | None, now: float) -> int:
        """Make failed rows (these, or all) due at once; sent rows are left alone."""
        with self._tx():
            if ids is None:
                return self.conn.execute("UPDATE outbox SET next_attempt = ? WHERE status = 'pending' "
                                         "AND last_error IS NOT NULL", (now,)).rowcount
            return sum(self.conn.execute("UPDATE outbox SET next_attempt = ? WHERE id = ? AND status = 'pending' "
                                         "AND last_error IS NOT NULL", (now, i)).rowcount for i in ids)

    def articles_after(self, rowid: int, limit: int = 500) -> list[tuple[int, Article]]:
        """(rowid, article) stored after `rowid`, oldest first (the live stream follows it)."""
        return [(r[0], row_to_article(r[1:])) for r in self.conn.execute(
            f"SELECT rowid, {ARTICLE_COLUMNS} FROM articles WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (rowid, limit))]

    def topic_counts(self) -> dict[str, int]:
        """Stored articles per topic (/metrics)."""
        return dict(self.conn.execute("SELECT topic, count(*) FROM article_topics GROUP BY topic").fetchall())

    def ping(self) -> None:
        """Raises when the database cannot be read (/readyz)."""
        self.conn.execute("SELECT count(*) FROM meta").fetchone()

    def article_rowid(self, article_id: str) -> int | None:
        row = self.conn.execute("SELECT rowid FROM articles WHERE id = ?", (article_id,)).fetchone()
        return row[0] if row else None

    # ---- API tokens (raqib.web.tokens) ----

    def token_add(self, token_id: str, name: str, scope: str, digest: str, created: float) -> None:
        with self._tx():
            self.conn.execute("INSERT INTO api_tokens (id, name, scope, hash, created) VALUES (?,?,?,?,?)",
                              (token_id, name, scope, digest, created))

    def token_scope(self, digest: str) -> tuple[str, str] | None:
        """(id, scope) of the live token with this hash, None when unknown or revoked."""
        row = self.conn.execute("SELECT id, scope FROM api_tokens WHERE hash = ? AND revoked IS NULL",
                                (digest,)).fetchone()
        return (row[0], row[1]) if row else None

    def token_used(self, token_id: str, when: float) -> None:
        with self._tx():
            self.conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (when, token_id))

    def token_rows(self) -> list[tuple]:
        """(id, name, scope, created, last used, revoked) of every token, oldest first."""
        return self.conn.execute("SELECT id, name, scope, created, last_used, revoked FROM api_tokens "
                                 "ORDER BY created, id").fetchall()

    def token_revoke(self, token_id: str, when: float) -> bool:
        with self._tx():
            return self.conn.execute("UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                     (when, token_id)).rowcount > 0

    def live_tokens(self) -> int:
        return self.conn.execute("SELECT count(*) FROM api_tokens WHERE revoked IS NULL").fetchone()[0]

    # ---- for the embedded search index (indexers.tantivy_index) -------------------------------
    # The tantivy index keeps article rowids; the rows themselves stay here.

    def rowids(self, ids: Sequence[str]) -> dict[str, int]:
        """rowid of each stored article id (ids not stored are left out)."""
        out: dict[str, int] = {}
        for i in range(0, len(ids), 30_000):
            chunk = list(ids[i:i + 30_000])
            out.update(self.conn.execute(
                f"SELECT id, rowid FROM articles WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def articles_by_rowid(self, rowids: Sequence[int]) -> dict[int, Article]:
        """The stored articles with these rowids (a search page's rows)."""
        out: dict[int, Article] = {}
        for i in range(0, len(rowids), 30_000):
            chunk = list(rowids[i:i + 30_000])
            for r in self.conn.execute(f"SELECT rowid, {ARTICLE_COLUMNS} FROM articles "
                                       f"WHERE rowid IN ({','.join('?' * len(chunk))})", chunk):
                out[r[0]] = row_to_article(r[1:])
        return out

    def index_counts(self) -> tuple[int, int]:
        """(articles marked indexed, articles stored): what the index should hold."""
        return self.conn.execute(
            "SELECT count(*) FILTER (WHERE indexed = 1), count(*) FROM articles").fetchone()

    def drop_legacy_fts(self) -> bool:
        """Drop the FTS5 table of the old embedded index, putting every article back in the
        index queue in the same transaction; False when there is none."""
        with self._tx():
            if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'articles_fts'").fetchone() is None:
                return False
            self.conn.execute("UPDATE articles SET indexed = 0, index_attempts = 0, index_error = NULL")
            self.conn.execute("DROP TABLE articles_fts")
            return True

    # ---- retention and statistics (monitor.retention decides; this deletes and counts) ----

    def articles_older_than(self, cutoff: datetime, limit: int = 1000) -> list[str]:
        """Ids of up to `limit` articles both published and fetched before `cutoff` (an old
        article fetched just now stays, or the next poll would store it again)."""
        c = iso(cutoff)
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM articles WHERE published < ? AND fetched < ? ORDER BY rowid LIMIT ?",
            (c, c, limit))]

    def delete_articles(self, ids: Sequence[str]) -> tuple[int, int]:
        """Delete these articles, their topic rows and their outbox rows in one transaction;
        returns (articles, outbox rows) deleted."""
        arts = alerts = 0
        with self._tx():
            for i in range(0, len(ids), 500):
                chunk = list(ids[i:i + 500])
                marks = ",".join("?" * len(chunk))
                alerts += self.conn.execute(f"DELETE FROM outbox WHERE article_id IN ({marks})", chunk).rowcount
                arts += self.conn.execute(f"DELETE FROM articles WHERE id IN ({marks})", chunk).rowcount
        return arts, alerts

    def compact(self) -> str:
        """Give freed pages back to the file system: switch the file to incremental
        auto-vacuum once (a full VACUUM), then free pages incrementally. Returns what it did."""
        if self.conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.conn.execute("VACUUM")
            done = "vacuum"
        else:
            # executescript steps the pragma to the end (execute() frees one page per call)
            self.conn.executescript("PRAGMA incremental_vacuum;")
            done = "incremental"
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return done

    def stats(self) -> dict:
        """What `raqib db stats` shows: articles (per feed, per topic, oldest and newest),
        pages, queues and outbox."""
        n, oldest, newest = self.conn.execute(
            "SELECT count(*), min(published), max(published) FROM articles").fetchone()
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return {
            "articles": n, "oldest_published": oldest, "newest_published": newest,
            "by_source": dict(self.conn.execute(
                "SELECT source, count(*) FROM articles GROUP BY source ORDER BY 2 DESC, 1")),
            "by_topic": dict(self.conn.execute(
                "SELECT topic, count(*) FROM article_topics GROUP BY topic ORDER BY 2 DESC, 1")),
            "database_bytes": page_size * pages, "free_bytes": page_size * free,
            "queues": self.queue_counts(), "outbox": self.outbox_backlog(),
            "subscriptions": self.conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0],
            "feeds_listed": self.conn.execute("SELECT count(*) FROM feed_list").fetchone()[0],
        }


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


@dataclass(frozen=True)
class Pending:
    """An article waiting in a queue, with what the alert stage needs to know about it."""

    key: tuple[int, int]  # (rowid, version): marks apply only to the version that was handled
    article: Article
    stored: float  # epoch seconds when first stored (0 for files before schema 1)
    backfill: bool  # part of a feed's back catalogue


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
