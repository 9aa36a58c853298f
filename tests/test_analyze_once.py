"""Analyze once: the parse worker's analysis travels with the Article and the main process
uses it instead of tokenizing the article again."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from monitor import analysis
from monitor.analysis import analysis_of, analyze_article, analyze_text, analyzed_doc, positions, remember
from monitor.arabic import forms, tokens
from monitor.config import load_config
from raqib.pipeline import parse_and_analyze
from raqib.service import run_once
from monitor.store import Store
from monitor.topics import build_tagger
from tests.corpus import rss, rss_item
from tests.e2e_setup import ROOT, write_config
from tests.helpers import make_article

LINK = "https://example.org/n1"
TAGGER = build_tagger(load_config(ROOT / "config").topics)


def test_shipped_analysis_is_what_the_matcher_would_compute():
    a = analyze_article(make_article("والناتو يجتمع في لاهاي", "قمة #قمة_لاهاي بالناتو، وكورسك"),
                        TAGGER)
    assert a.analysis is not None
    assert a.analysis.title_tokens.split() == list(tokens(a.title))
    assert set(a.analysis.body_keys.split()) == {k for t in tokens(a.body) for k in forms(t)}
    doc = analyzed_doc(a)
    assert list(doc.title) == positions(a.title) and list(doc.body) == positions(a.body)
    assert doc.title_keys == {k for p in positions(a.title) for k in p}
    assert type(doc.all_keys) is set and "ناتو" in doc.all_keys and "لاهاي" in doc.body_keys
    # equality and the stored form ignore the analysis
    import dataclasses

    bare = dataclasses.replace(a, analysis=None)
    assert bare == a and hash(bare) == hash(a)


def test_keys_are_every_form_of_every_token_on_real_articles():
    from tests.corpus import topical_docs

    for d in topical_docs()[:150]:
        a = analyze_text(d.title, d.abstract + "\n" + d.text)
        assert set(a.body_keys.split()) == {k for t in a.body_tokens.split() for k in forms(t)}
        assert set(a.title_keys.split()) == {k for t in tokens(d.title) for k in forms(t)}


def test_index_reads_the_same_terms_from_the_shipped_analysis():
    from monitor.analysis import index_positions, index_terms_of
    from monitor.arabic import index_terms

    a = analyze_article(make_article("للناتو قمة في لاهاي", "بالناتو وكورسك #قمة_لاهاي 2026"), TAGGER)
    assert index_terms_of(a) == (index_terms(a.title), index_terms(a.body))
    title, body = index_positions(a)
    assert title == positions(a.title) and body == positions(a.body)


def test_analysis_crosses_a_process_boundary_as_a_few_strings():
    a = analyze_article(make_article("عنوان", "نص " * 500), TAGGER)
    back = pickle.loads(pickle.dumps(a))
    assert back.analysis == a.analysis
    assert len(pickle.dumps(a.analysis)) < 3 * len(pickle.dumps(a.analysis.body_tokens))


def test_article_read_back_from_the_store_finds_its_shipped_analysis(tmp_path, monkeypatch):
    a = analyze_article(make_article("قمة الناتو", "اجتماع في لاهاي", link=LINK), TAGGER)
    stored = dataclasses.replace(a, analysis=None)  # as row_to_article returns it: no analysis
    assert stored.analysis is None and stored.id == a.id
    remember([a])
    assert analysis_of(stored) is a.analysis
    # a changed article under the same id is analyzed afresh, never with the stale tokens
    changed = dataclasses.replace(a, summary="اجتماع في كورسك", analysis=None)
    assert changed.id == a.id and "كورسك" in analysis_of(changed).body_tokens


def test_the_matcher_consumes_the_handoff():
    a = analyze_article(make_article("قمة الناتو", "اجتماع في لاهاي", link="https://example.org/c1"),
                        TAGGER)
    stored = dataclasses.replace(a, analysis=None)
    remember([a])
    before = analysis.backlog()
    doc = analyzed_doc(stored)
    assert analysis.backlog() == before - 1 and "ناتو" in doc.all_keys
    assert analysis.shipped(stored) is None  # read again later: analyzed afresh, same answer
    assert analyzed_doc(stored).all_keys == doc.all_keys


def test_handoff_is_bounded(monkeypatch):
    from collections import OrderedDict

    monkeypatch.setattr(analysis, "_handoff", OrderedDict())
    monkeypatch.setattr(analysis, "HANDOFF_SIZE", 3)
    arts = [analyze_article(make_article(f"عنوان {i}", f"نص رقم {i}", link=f"https://x.org/{i}"), TAGGER)
            for i in range(5)]
    remember(arts)
    assert len(analysis._handoff) == 3
    assert analysis.shipped(make_article("عنوان 0", "نص رقم 0", link="https://x.org/0")) is None


def test_worker_output_carries_the_analysis():
    from datetime import UTC, datetime

    body = rss([rss_item("قمة الناتو", "https://example.org/1", "اجتماع في لاهاي")])
    parsed = parse_and_analyze(body, {}, "http://127.0.0.1/f", "s", datetime.now(UTC), "", TAGGER)
    a = parsed.articles[0]
    assert a.analysis == analyze_text(a.title, a.body) and a.language == "ar"


@pytest.mark.parametrize("handoff_size", [16384, 30])
async def test_main_process_matches_without_tokenizing(tmp_path, feed_server, monkeypatch, handoff_size):
    """A real poll with a parse worker process: the drain's matcher gets every article's
    analysis from the hand-off, so re-analysis in this process would fail the run. With a
    hand-off smaller than the poll, backpressure holds feeds back until the matcher has
    read what is stored (four feeds of 20 would overflow 30 entries otherwise)."""
    from collections import OrderedDict

    monkeypatch.setattr(analysis, "_handoff", OrderedDict())  # nothing left by other tests
    monkeypatch.setattr(analysis, "HANDOFF_SIZE", handoff_size)
    monkeypatch.setattr(analysis, "BACKLOG_HIGH", handoff_size // 2)
    feeds = []
    for f in range(4):
        items = [rss_item(f"قمة الناتو {f} {i}", f"https://example.org/{f}/{i}", "اجتماع في لاهاي",
                          guid=f"g-{f}-{i}") for i in range(20)]
        feed_server.set_feed(f"/{f}.xml", rss(items))
        feeds.append((f"f{f}", feed_server.url(f"/{f}.xml")))
    cfg = load_config(write_config(tmp_path, feeds,
                                   channels={"log": {"type": "log"}}, settings={"parse": {"workers": 1}},
                                   subscriptions=[{"id": "s", "query": "الناتو", "channels": ["log"],
                                                   "backfill": True}]))

    def refuse(title, body):
        raise AssertionError("the main process analyzed an article again")

    monkeypatch.setattr(analysis, "analyze_text", refuse)
    import indexers.tantivy_index as embedded  # the index reads the shipped tokens too

    monkeypatch.setattr(embedded, "tokens", lambda text: refuse(text, ""))
    reports, drained, _ = await run_once(cfg)
    assert sum(r.new for r in reports) == 80 and drained.matched == 80 and drained.alerts == 80
    store = Store(cfg.data_dir / "raqib.db")
    assert store.count() == 80
    store.close()
