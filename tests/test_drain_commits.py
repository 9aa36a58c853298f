"""The drain commits the embedded index about once a second, not once per page, marks only
what is committed, and a failure leaves everything since the last commit queued; polls wait
for a drain that is moving, however long, so no shipped analysis falls out of the hand-off."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict

import pytest

from indexers.tantivy_index import TantivyIndex
from monitor import analysis
from monitor.analysis import analyze_article, remember
from monitor.config import load_config
from monitor.store import Store
from monitor.topics import build_tagger
from raqib import pipeline
from raqib.pipeline import Pipeline, drain_index
from tests.e2e_setup import ROOT, write_config
from tests.helpers import make_article

TAGGER = build_tagger(load_config(ROOT / "config").topics)


class Counting(TantivyIndex):
    """The real embedded index, counting its commits; `stray` slips an article that is not in
    the store into the n-th page added (the index refuses the whole page)."""

    def __init__(self, *a, stray_on_page: int = 0, **k):
        super().__init__(*a, **k)
        self.commits = self.pages = 0
        self.stray_on_page = stray_on_page

    def add_sync(self, articles):
        self.pages += 1
        if self.pages == self.stray_on_page:
            articles = [*articles, make_article("ليس في المخزن", "نص", link="https://x.org/stray")]
        super().add_sync(articles)

    def commit_sync(self):
        self.commits += 1
        super().commit_sync()


async def _db(fn, *a):
    return fn(*a)


def _fill(store: Store, n: int) -> None:
    store.ingest([make_article(f"الناتو {i}", f"نص {i}", link=f"https://x.org/{i}") for i in range(n)],
                 [], {}, None)


@pytest.mark.parametrize("every, commits", [(3600.0, 1), (0.0, 3)])
async def test_pages_share_a_commit_and_are_marked_once_committed(tmp_path, monkeypatch, every, commits):
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", every)
    store = Store(tmp_path / "raqib.db")
    _fill(store, 25)
    index = Counting(tmp_path / "raqib.db")
    assert await drain_index(_db, store, index, batch=10) == (25, "")
    assert index.pages == 3 and index.commits == commits
    assert store.queue_counts()["waiting_to_index"] == 0 and await index.count() == 25
    await index.close()
    store.close()


async def test_a_refused_page_rolls_back_what_was_not_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", 3600.0)
    store = Store(tmp_path / "raqib.db")
    _fill(store, 25)
    index = Counting(tmp_path / "raqib.db", stray_on_page=3)
    n, error = await drain_index(_db, store, index, batch=10)
    assert n == 0 and "not in the store" in error
    assert store.queue_counts()["waiting_to_index"] == 25
    index.commit_sync()  # the two pages added before the refusal were rolled back
    assert await index.count() == 0
    assert await drain_index(_db, store, index, batch=10) == (25, "")
    assert await index.count() == 25
    await index.close()
    store.close()


def _handoff_of(n: int) -> list:
    arts = [analyze_article(make_article(f"عنوان {i}", f"نص {i}", link=f"https://x.org/h{i}"), TAGGER)
            for i in range(n)]
    remember(arts)
    return [dataclasses.replace(a, analysis=None) for a in arts]


@pytest.fixture
def small_handoff(monkeypatch, tmp_path):
    monkeypatch.setattr(analysis, "_handoff", OrderedDict())
    monkeypatch.setattr(analysis, "BACKLOG_HIGH", 4)
    monkeypatch.setattr(pipeline, "BACKPRESSURE_WAIT", 0.3)
    return Pipeline(load_config(write_config(tmp_path, [])))


async def test_a_poll_waits_for_a_drain_that_is_moving(small_handoff):
    """The drain needs several times BACKPRESSURE_WAIT; the poll still waits it out."""
    p = small_handoff
    stored = _handoff_of(6)
    done = asyncio.Event()

    async def slow_drain():
        for a in stored:  # one read every 0.2 s: the index reading, then the matcher consuming
            await asyncio.sleep(0.2)
            analysis.analysis_of(a, consume=True)
        done.set()

    drain = asyncio.create_task(slow_drain())
    assert await p._backpressure(3) == 3
    assert analysis.backlog() + 3 <= analysis.BACKLOG_HIGH  # released by the drain, not the clock
    await drain
    assert done.is_set()
    await p.close()


async def test_a_stuck_drain_lets_a_poll_through(small_handoff):
    p = small_handoff
    _handoff_of(6)
    assert await p._backpressure(3) == 3  # nothing reads the hand-off: released after the wait
    assert analysis.backlog() == 6
    await p.close()


def test_a_document_is_replaced_whether_committed_or_only_added(tmp_path):
    """Deletes are issued only for ids the index holds; those it holds are still replaced."""
    store = Store(tmp_path / "raqib.db")
    a = make_article("الناتو", "نص أول", link="https://x.org/r")
    store.ingest([a], [], {}, None)
    index = Counting(tmp_path / "raqib.db")
    index.index_sync([a])
    index.index_sync([dataclasses.replace(a, content="نص ثان")])  # committed before: replaced
    assert index.count_sync() == 1 and index.search_sync("ثان").total == 1
    index.add_sync([dataclasses.replace(a, content="نص ثالث")])
    index.add_sync([dataclasses.replace(a, content="نص رابع")])  # added, not committed: replaced too
    index.commit_sync()
    assert index.count_sync() == 1 and index.search_sync("رابع").total == 1
    assert index.search_sync("ثالث").total == 0
    index.close_sync()
    store.close()


def test_a_failed_deletion_makes_the_drains_next_commit_fail_so_nothing_is_marked_lost(tmp_path):
    """Retention's delete rolls the writer back on failure, which also drops pages a drain added
    but has not committed. The drain's next commit must then fail (its pages stay queued), not
    succeed on an empty writer and mark them indexed. The deletion failure is injected: a
    healthy tantivy writer does not refuse a delete."""
    from monitor.errors import IndexError_

    store = Store(tmp_path / "raqib.db")
    _fill(store, 3)
    arts = [p.article for p in store.pending("indexed")]
    idx = TantivyIndex(tmp_path / "raqib.db")
    idx.add_sync(arts)  # a drain's page, not committed yet
    real = idx._writer_()

    class Refusing:
        def __getattr__(self, name):
            return getattr(real, name)

        def delete_documents_by_term(self, *a):
            raise ValueError("injected")

    idx._writer = Refusing()
    with pytest.raises(IndexError_, match="deleting documents failed"):
        idx.delete_sync(["x"])
    idx._writer = real
    with pytest.raises(IndexError_, match="rolled back"):
        idx.commit_sync()
    assert idx.count_sync() == 0
    idx.add_sync(arts)  # the drain's retry of what stayed queued
    idx.commit_sync()
    assert idx.count_sync() == 3
    store.close()
