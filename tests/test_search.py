"""The embedded index and the alert matcher: one query language, the same answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.matcher import Matcher
from indexers.tantivy_index import TantivyIndex
from monitor.analysis import analyze_article
from monitor.config import load_config
from monitor.errors import QueryError
from monitor.highlight import render
from monitor.store import Store
from monitor.topics import build_tagger
from tests.corpus import seed_text, topical_docs
from tests.e2e_setup import ROOT
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
    texts = [render(h.article.title, h.title_marks, "«", "»") + " "
             + render(h.snippet.text, h.snippet.marks, "«", "»") for h in page.hits]
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


# ------------------------------------------------- the tantivy index: phrases, paging, readers ----

async def test_phrases_are_positions_over_clitic_forms(tmp_path, tagger):
    """A phrase matches when each word's key is among the forms at consecutive positions,
    whatever clitics the text glued on; never across a gap, a field or out of order."""
    arts = [analyze_article(a, tagger) for a in [
        make_article("خبر", "التجربة المريرة لمذكرة بودابست"),  # ل + مذكرة
        make_article("خبر", "وبمذكرة وبودابست"),  # clitics on both words
        make_article("مذكرة", "بودابست في الخبر"),  # title's last word, body's first: no phrase
        make_article("خبر", "مذكرة في بودابست"),  # a word between
        make_article("خبر", "بودابست مذكرة"),  # out of order
    ]]
    store, index = await _index(tmp_path, arts)
    assert _ids(await index.search('"مذكرة بودابست"')) == {arts[0].id, arts[1].id}
    assert _ids(await index.search('"لمذكرة بودابست"')) == {arts[0].id}  # a bare ل is kept as typed
    assert _ids(await index.search('text:"المذكرة بودابست"')) == {arts[0].id, arts[1].id}
    assert _ids(await index.search('title:"مذكرة بودابست"')) == set()
    page = await index.search('"مذكرة بودابست"')
    snippets = {h.article.id: render(h.snippet.text, h.snippet.marks, "«", "»") for h in page.hits}
    assert "«لمذكرة بودابست»" in snippets[arts[0].id]  # a phrase is one span
    await index.close()
    store.close()


async def test_hashtags_and_underscores_are_separate_words(tmp_path, tagger):
    arts = [analyze_article(a, tagger) for a in [
        make_article("حلف #شمال_الأطلسي", "وسم #قمة_لاهاي اليوم"),
        make_article("قمة", "شمال_المدينة"),
        make_article("news", "kursk_region #NATO_summit", language="en"),
    ]]
    store, index = await _index(tmp_path, arts)
    assert _ids(await index.search("لاهاي")) == {arts[0].id}
    assert _ids(await index.search('"قمة لاهاي"')) == {arts[0].id}
    assert _ids(await index.search("#قمة_لاهاي")) == {arts[0].id}
    assert _ids(await index.search('"شمال الأطلسي"')) == {arts[0].id}
    assert _ids(await index.search("شمال")) == {arts[0].id, arts[1].id}
    assert _ids(await index.search("nato")) == {arts[2].id}
    assert _ids(await index.search('"kursk region"')) == {arts[2].id}
    assert _ids(await index.search("kursk_region")) == {arts[2].id}
    assert _ids(await index.search("topic:nato")) == {arts[0].id, arts[2].id}  # tagged from the hashtags
    await index.close()
    store.close()


async def test_date_sorted_pages_have_no_duplicates_or_gaps(tmp_path):
    """Newest first with ties (same published instant) ordered by arrival; a keyset cursor,
    so newer articles arriving between pages shift nothing."""
    t0 = datetime(2024, 12, 1, tzinfo=UTC)
    stamps = [t0 - timedelta(hours=h) for h in (0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 5, 5, 8)]
    arts = [make_article(f"كورسك {i}", "نص", link=f"https://x.test/{i}", published=p)
            for i, p in enumerate(stamps)]
    store, index = await _index(tmp_path, arts)
    rowid = store.rowids([a.id for a in arts])
    want = sorted(arts, key=lambda a: (a.published, rowid[a.id]), reverse=True)
    seen, cursor, pages, late = [], None, 0, []
    while True:
        page = await index.search("كورسك", limit=3, sort="date", cursor=cursor)
        assert page.total == len(arts) + len(late)  # the total is today's
        seen += [h.article.id for h in page.hits]
        pages += 1
        if pages == 2:  # newer articles arrive while someone pages: they are not on later pages
            late = [make_article(f"كورسك جديد {i}", "نص", link=f"https://late.test/{i}",
                                 published=t0 + timedelta(minutes=i)) for i in range(3)]
            store.ingest(late, [], {}, None)
            await index.index(late)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [a.id for a in want]
    assert pages == 5
    # relevance pages (offset cursor) cover the whole result once too
    seen, cursor = [], None
    while True:
        page = await index.search("كورسك OR نص", limit=4, cursor=cursor)
        seen += [h.article.id for h in page.hits]
        if not (cursor := page.next_cursor):
            break
    assert sorted(seen) == sorted(a.id for a in arts + late)
    with pytest.raises(QueryError, match="invalid cursor"):
        await index.search("كورسك", sort="relevance", cursor="d:1:2")
    with pytest.raises(QueryError, match="invalid cursor"):
        await index.search("كورسك", sort="date", cursor="d:x:2")
    await index.close()
    store.close()


READER = """
import sys
from indexers.tantivy_index import TantivyIndex
index = TantivyIndex(sys.argv[1])
for line in sys.stdin:
    print(index.search_sync(line.strip(), limit=50).total, flush=True)
"""


async def test_a_reader_process_sees_the_writers_commits(tmp_path):
    import subprocess
    import sys

    first = [make_article("كورسك", "نص أول", link="https://x.test/1")]
    store, index = await _index(tmp_path, first)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "raqib.db")], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        def ask(q: str) -> int:
            reader.stdin.write(q + "\n")
            reader.stdin.flush()
            return int(reader.stdout.readline())

        assert ask("كورسك") == 1
        more = [make_article("بكورسك", f"نص {i}", link=f"https://x.test/m{i}") for i in range(3)]
        store.ingest(more, [], {}, None)
        await index.index(more)  # returns after the commit: the reader sees it on its next search
        assert ask("كورسك") == 4
        assert ask('"نص أول"') == 1
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    await index.close()
    store.close()


async def test_trends_count_articles_per_topic_and_interval(tmp_path):
    t0 = datetime(2024, 12, 1, 10, 30, tzinfo=UTC)
    spec = [(0, ("nato",)), (0.2, ("nato", "kursk")), (1, ("kursk",)), (25, ("nato",)), (26, ())]
    arts = [make_article(f"خبر {i}", "كورسك" if "kursk" in t else "نص", link=f"https://x.test/{i}",
                         published=t0 + timedelta(hours=h), topics=t) for i, (h, t) in enumerate(spec)]
    store, index = await _index(tmp_path, arts)

    def table(buckets):
        return sorted((b.bucket.isoformat(), b.topic, b.count) for b in buckets)

    assert table(await index.trends(interval="day")) == [
        ("2024-12-01T00:00:00+00:00", "kursk", 2), ("2024-12-01T00:00:00+00:00", "nato", 2),
        ("2024-12-02T00:00:00+00:00", "nato", 1)]
    assert table(await index.trends(interval="hour")) == [
        ("2024-12-01T10:00:00+00:00", "kursk", 1), ("2024-12-01T10:00:00+00:00", "nato", 2),
        ("2024-12-01T11:00:00+00:00", "kursk", 1), ("2024-12-02T11:00:00+00:00", "nato", 1)]
    assert table(await index.trends("كورسك", interval="day")) == [
        ("2024-12-01T00:00:00+00:00", "kursk", 2), ("2024-12-01T00:00:00+00:00", "nato", 1)]
    assert table(await index.trends(interval="day", start=t0 + timedelta(hours=1))) == [
        ("2024-12-01T00:00:00+00:00", "kursk", 1), ("2024-12-02T00:00:00+00:00", "nato", 1)]
    assert table(await index.trends(interval="day", end=t0 + timedelta(hours=1))) == [
        ("2024-12-01T00:00:00+00:00", "kursk", 1), ("2024-12-01T00:00:00+00:00", "nato", 2)]
    await index.close()
    store.close()


def test_source_terms_are_exactly_what_source_matches_accepts():
    from indexers.tantivy_index import source_terms
    from monitor.query import source_matches

    sources = ["bbc", "bbc-arabic", "BBC-Arabic-Live", "bbcx", "a--b", "-x", "sky-news-ar"]
    patterns = {p.lower() for s in sources for p in (s, s[:3], s + "-", s.split("-")[0])} | {"bbc-", "a-", "a"}
    for s in sources:
        assert {p for p in patterns if p and source_matches(p, s)} == {p for p in patterns if p in source_terms(s)}, s


def test_reindex_from_the_command_line_clears_the_index_first(tmp_path):
    """A document whose article left the store is gone after `raqib index reindex`."""
    import sqlite3
    import subprocess
    import sys

    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [])
    db = tmp_path / "data" / "raqib.db"
    arts = [make_article("كورسك", f"نص {i}", link=f"https://x.test/{i}") for i in range(3)]
    store = Store(db)
    store.ingest(arts, [], {}, None)
    index = TantivyIndex(db)
    index.index_sync(arts)
    index.close_sync()
    store.close()
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM articles WHERE id = ?", (arts[0].id,))
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "index", "reindex", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "reindexed 2 articles" in r.stdout, r.stderr
    index = TantivyIndex(db)
    assert index.count_sync() == 2
    assert {h.article.id for h in index.search_sync("كورسك").hits} == {a.id for a in arts[1:]}
    index.close_sync()
