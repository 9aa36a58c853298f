"""The index queue: paged, a refused document becomes a dead letter and never blocks the
others, an outage keeps everything queued, reindex resets the queue.

The embedded index never refuses one document, so `Refusing` wraps the real TantivyIndex and
refuses chosen ids the way a cluster reports per-item bulk failures (BulkIndexError); the
cluster path itself is covered by the engine suite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from indexers.engine import BulkIndexError
from indexers.tantivy_index import TantivyIndex
from monitor.errors import IndexError_
from raqib.pipeline import MAX_INDEX_ATTEMPTS, drain_index
from monitor.store import Store
from tests.e2e_setup import ROOT, write_config
from tests.helpers import make_article


class Refusing:
    def __init__(self, inner: TantivyIndex, refuse: set[str], down: bool = False):
        self.inner, self.refuse, self.down = inner, refuse, down
        self.batches: list[int] = []

    async def index(self, articles):
        self.batches.append(len(articles))
        if self.down:
            raise IndexError_("connection refused")
        ok = [a for a in articles if a.id not in self.refuse]
        await self.inner.index(ok)
        if len(ok) < len(articles):
            raise BulkIndexError({a.id: "mapper_parsing_exception" for a in articles if a.id in self.refuse},
                                 [a.id for a in ok])


async def _db(fn, *a):
    return fn(*a)


def _fill(store: Store, n: int) -> list:
    arts = [make_article(f"الناتو {i}", f"نص {i}", link=f"https://x.org/{i}") for i in range(n)]
    store.ingest(arts, [], {}, None)
    return arts


async def test_a_refused_document_becomes_a_dead_letter_and_blocks_nothing(tmp_path):
    store = Store(tmp_path / "raqib.db")
    arts = _fill(store, 25)
    bad = arts[0].id
    index = Refusing(TantivyIndex(tmp_path / "raqib.db"), {bad})
    n, error = await drain_index(_db, store, index, batch=10)
    assert n == 24 and "mapper_parsing_exception" in error
    assert index.batches == [10, 10, 5]  # paged: the refusal in the first page stopped nothing
    for _ in range(2, MAX_INDEX_ATTEMPTS + 1):
        await drain_index(_db, store, index, batch=10)
    counts = store.queue_counts()
    assert counts["waiting_to_index"] == 0 and counts["index_dead_letters"] == 1
    assert store.dead_letters()[0][:2] == (bad, "mapper_parsing_exception")
    assert await index.inner.count() == 24
    before = len(index.batches)
    await drain_index(_db, store, index, batch=10)
    assert len(index.batches) == before  # a dead letter is not retried by the drain
    # reindex puts dead letters back in the queue
    index.refuse.clear()
    assert store.requeue_for_index() == 25
    assert (await drain_index(_db, store, index, batch=10))[0] == 25
    assert store.queue_counts() == {"waiting_to_index": 0, "waiting_to_match": 25, "index_dead_letters": 0}
    await index.inner.close()
    store.close()


async def test_an_unreachable_index_keeps_everything_queued_without_dead_letters(tmp_path):
    store = Store(tmp_path / "raqib.db")
    _fill(store, 5)
    index = Refusing(TantivyIndex(tmp_path / "raqib.db"), set(), down=True)
    for _ in range(MAX_INDEX_ATTEMPTS + 2):
        n, error = await drain_index(_db, store, index)
        assert n == 0 and "connection refused" in error
    assert store.queue_counts()["waiting_to_index"] == 5
    assert store.queue_counts()["index_dead_letters"] == 0
    await index.inner.close()
    store.close()


def test_index_status_and_reindex_from_the_command_line(tmp_path):
    cfg = write_config(tmp_path, [])
    store = Store(tmp_path / "data" / "raqib.db")
    _fill(store, 3)
    store.close()

    def raqib(*args):
        return subprocess.run([sys.executable, "-m", "raqib.cli", *args, "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    st = json.loads(raqib("index", "status", "--json").stdout)
    assert st["waiting_to_index"] == 3 and st["indexed_documents"] == 0 and st["index_dead_letters"] == 0
    r = raqib("index", "reindex")
    assert r.returncode == 0 and "reindexed 3 articles" in r.stdout, r.stderr
    st = json.loads(raqib("index", "status", "--json").stdout)
    assert st["waiting_to_index"] == 0 and st["indexed_documents"] == 3


async def test_the_embedded_health_check_checks(tmp_path):
    store = Store(tmp_path / "raqib.db")
    arts = _fill(store, 4)
    index = TantivyIndex(tmp_path / "raqib.db")
    assert (await index.health())["status"] == "green"  # nothing indexed, nothing claimed
    store.mark("indexed", [(i + 1, 1) for i in range(4)])  # the store claims what the index lacks
    h = await index.health()
    assert h["status"] == "yellow" and "holds 0 documents" in h["problems"][0]
    await index.index(arts)
    h = await index.health()
    assert h["status"] == "green" and h["writer"] == "this process"
    reader = TantivyIndex(tmp_path / "raqib.db")  # another process: a reader, the writer is taken
    h = await reader.health()
    assert h["status"] == "green" and h["writer"] == "another process" and h["documents"] == 4
    with pytest.raises(IndexError_, match="another Raqib process"):
        await reader.index(arts[:1])
    await reader.close()
    for seg in (tmp_path / "index").glob("*.idx"):
        seg.unlink()  # an index file lost: reads fail, and health says so
    await index.close()
    broken = TantivyIndex(tmp_path / "raqib.db")
    h = await broken.health()
    assert h["status"] == "red" and "cannot open" in h["problems"][0] and "reindex" in h["problems"][0]
    await broken.clear()  # what `raqib index reindex` does first: a new, empty index
    assert (await broken.health())["documents"] == 0
    await broken.index(arts)
    assert (await broken.search("الناتو")).total == 4
    await broken.close()
    store.close()
