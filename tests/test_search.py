"""The embedded index and the alert matcher: one query language, the same answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from alerts.matcher import Matcher
from indexers.tantivy_index import TantivyIndex
from monitor.analysis import analyze_article
from monitor.config import load_config
from monitor.errors import QueryError
from monitor.store import Store
from monitor.topics import build_tagger
from tests.corpus import seed_text, topical_docs
from tests.helpers import make_article


@pytest.fixture
def tagger():
    return build_tagger(load_config("config").topics)


async def _index(tmp_path, articles):
    store = Store(tmp_path / "raqib.db")
    store.ingest(articles, [], {}, None)
    index = TantivyIndex(tmp_path / "raqib.db")
    await index.index(articles)
    return store, index


def _ids(page):
    return {h.article.id for h in page.hits}


async def test_search_finds_clitic_and_diacritic_forms(tmp_path, tagger):
    arts = [analyze_article(a, tagger) for a in [
        make_article("اجتماع للناتو", "نص أول"),
        make_article("تصريح", "قال إنه سيتصل بالناتو غدا"),
        make_article("خبر", "والنَّاتُو يرد على روسيا"),
        make_article("سيناتور أمريكي", "الناتج المحلي"),
        make_article("Nato summit", "Ministers met", language="en"),
    ]]
    store, index = await _index(tmp_path, arts)
    page = await index.search("الناتو", limit=50)
    assert _ids(page) == {a.id for a in arts[:3]}
    assert page.total == 3
    # highlighting marks the original word, clitic and diacritics included
    texts = [h.highlights["title"] + " " + h.snippet for h in page.hits]
    assert any("«للناتو»" in t for t in texts)
    assert any("«بالناتو»" in t for t in texts)
    assert any("«والنَّاتُو»" in t for t in texts)
    assert _ids(await index.search("nato")) == {arts[4].id}
    await index.close()
    store.close()


async def test_query_language_operators_fields_and_paging(tmp_path, tagger):
    t0 = datetime(2024, 12, 1, tzinfo=UTC)
    arts = [analyze_article(a, tagger) for a in [
        make_article("كورسك", "هجوم في منطقة كورسك", published=t0, source="bbc-arabic"),
        make_article("مذكرة بودابست", "التجربة المريرة لمذكرة بودابست", published=t0, source="cnn-arabic"),
        make_article("بودابست", "زار الوفد مذكرة في بودابست", published=datetime(2024, 11, 1, tzinfo=UTC)),
        make_article("حلف شمال الأطلسي", "قمة الناتو وكورسك", published=t0, source="bbc-arabic"),
    ]]
    store, index = await _index(tmp_path, arts)
    assert _ids(await index.search('"مذكرة بودابست"')) == {arts[1].id}
    assert _ids(await index.search("مذكرة بودابست")) == {arts[1].id, arts[2].id}
    assert _ids(await index.search("كورسك -الناتو")) == {arts[0].id}
    assert _ids(await index.search("كورسك OR بودابست")) == {a.id for a in arts}
    assert _ids(await index.search("title:كورسك")) == {arts[0].id}
    assert _ids(await index.search("topic:kursk")) == {arts[0].id, arts[3].id}
    assert _ids(await index.search("topic:nato OR topic:budapest_memorandum")) == {arts[1].id, arts[3].id}
    assert _ids(await index.search("source:bbc")) == {arts[0].id, arts[3].id}
    assert _ids(await index.search("بودابست date:2024-11")) == {arts[2].id}
    assert _ids(await index.search("بودابست date:2024-12-01..")) == {arts[1].id}
    assert _ids(await index.search('(كورسك OR بودابست) -"مذكرة بودابست" lang:ar')) == {
        arts[0].id, arts[2].id, arts[3].id}
    p1 = await index.search("كورسك OR بودابست", limit=3)
    assert len(p1.hits) == 3 and p1.total == 4 and p1.next_cursor
    p2 = await index.search("كورسك OR بودابست", limit=3, cursor=p1.next_cursor)
    assert len(p2.hits) == 1 and p2.next_cursor is None
    assert _ids(p1) | _ids(p2) == {a.id for a in arts}
    trends = await index.trends(interval="day")
    assert {(b.bucket.date().isoformat(), b.topic, b.count) for b in trends} >= {
        ("2024-12-01", "kursk", 2), ("2024-12-01", "nato", 1)}
    with pytest.raises(QueryError):
        await index.search("(كورسك")
    await index.close()
    store.close()


QUERIES = [
    "الناتو", "كورسك", '"حلف شمال الأطلسي"', "روسيا أوكرانيا", "روسيا OR ترامب",
    "الناتو -روسيا", "topic:nato", "topic:kursk OR بودابست", '"مذكرة بودابست"',
    "title:الناتو", "source:bbc", "lang:ar الأطلسي", '(موسكو OR كييف) "الأمين العام"',
    "NOT الناتو topic:nato", "text:سيكورسكي", "date:2018-03 الناتو",
]


async def test_search_and_alert_matcher_agree_on_real_articles(tmp_path, tagger):
    """An alert fires exactly when a search would find the article (same corpus, same rules)."""
    docs = topical_docs()
    arts = []
    for d in docs:
        a = make_article(d.title, d.text, source=d.source.lower(), link=d.url,
                         published=datetime.strptime(d.docno.rsplit("-", 1)[1], "%Y%m%d").replace(tzinfo=UTC))
        arts.append(analyze_article(a, tagger))
    store, index = await _index(tmp_path, arts)
    # random two-word queries drawn from the corpus vocabulary, on top of the fixed ones
    rnd = random.Random(7)
    vocab = [w for a in arts[:50] for w in a.title.split() if len(w) > 3]
    queries = QUERIES + [f"{rnd.choice(vocab)} OR {rnd.choice(vocab)}" for _ in range(10)]
    matcher = Matcher((str(i), q) for i, q in enumerate(queries))
    fired: dict[str, set[str]] = {str(i): set() for i in range(len(queries))}
    for a in arts:
        for rid in matcher.match(a):
            fired[rid].add(a.id)
    nonempty = 0
    for i, q in enumerate(queries):
        page = await index.search(q, limit=10_000)
        assert _ids(page) == fired[str(i)], q
        nonempty += bool(page.total)
    assert nonempty >= len(queries) - 4
    await index.close()
    store.close()


async def test_seed_article_is_found_by_its_topics(tmp_path, tagger):
    art = analyze_article(make_article("روتي: على الناتو دعم أوكرانيا", seed_text()), tagger)
    store, index = await _index(tmp_path, [art])
    for q in ["الناتو", "للناتو", "كورسك", '"مذكرة بودابست"', "topic:budapest_memorandum", "الأطلنطي"]:
        assert (await index.search(q)).total == 1, q
    await index.close()
    store.close()


def test_windowed_phrase_check_equals_the_token_check():
    """The search index verifies phrases on windows of the text; it must agree with the
    matcher's check over all tokens, on real text, for phrases that occur and ones that don't."""
    from monitor.arabic import forms, normalize, query_key, tokens
    from monitor.query import phrase_in, phrase_in_text

    rnd = random.Random(5)
    agree = found = 0
    for d in topical_docs()[:150]:
        toks = tokens(d.text)
        norm, pos = normalize(d.text), [forms(t) for t in toks]
        for _ in range(15):
            j = rnd.randrange(max(1, len(toks) - 3))
            keys = tuple(query_key(t) for t in toks[j:j + rnd.choice([2, 3])])
            if rnd.random() < 0.3:
                keys = (*keys[:-1], query_key(rnd.choice(toks)))
            expected = phrase_in(pos, keys)
            assert phrase_in_text(norm, keys) == expected, keys
            found += expected
            agree += 1
    assert agree > 2000 and 0 < found < agree
