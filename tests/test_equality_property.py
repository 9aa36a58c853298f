"""Search ⇔ alert, as a property: for ANY query of the language, the embedded index finds
exactly the articles the alert matcher fires on.

Queries are drawn by hypothesis from the whole language (words, phrases, title:/text:,
topic:, source:, lang:, absolute and relative dates, AND/OR/NOT/-, groups) with words taken
from real ANT articles — as written, with diacritics, with the article added, with clitics
glued on, joined by underscores and hashtags. The clock is drawn too, so relative dates are
checked as the window moves over the corpus. Also here: the fixed cases of issue 6 (hashtags,
relative dates, short clitic readings) on both sides.
"""

from __future__ import annotations

import os
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.matcher import Matcher
from indexers.tantivy_index import MAX_LIMIT, TantivyIndex
from monitor.analysis import analyze_article, analyzed_doc
from monitor.arabic import WORD_RE, forms, tokens
from monitor.config import load_config
from monitor.models import Article
from monitor.query import AnalyzedDoc, evaluate, parse, without_relative_dates
from monitor.store import Store
from monitor.topics import build_tagger
from tests.corpus import topical_docs
from tests.helpers import make_article

N_REAL = 300
CLITICS = ["و", "ب", "ك", "ل", "ف", "بال", "وال", "لل", "كال", "وب", "ال"]
DATES = ["24h", "7d", "2w", "30d", "90d", "12h", "2018-03", "2018", ">=2018-05-01", "<2018-04",
         "2018-03-01..2018-04-15", "..2018-06", "2018-06-10T12:00..", ">2018-05", "<=2018-03-15"]
LANGS = ["ar", "en"]
# Short clitic readings, hashtags and the README's examples, as their own articles.
FIXED = [
    ("كمال يعود", "قال كمال إن الجلسة انتهت"), ("المال العام", "نقص في المال"),
    ("خطر كامن", "تهديد كامن في المنطقة"), ("الأمن القومي", "مجلس الأمن"),
    ("اجتماع للناتو", "بالناتو والناتو وناتو"), ("معارك بكورسك", "القتال في وكورسك"),
    ("التجربة المريرة", "التجربة المريرة لمذكرة بودابست"), ("حلف #شمال_الأطلسي", "#قمة_لاهاي اليوم"),
    ("#شمال_الأطلسي", "وسم #الناتو_2024 و#كورسك"), ("كالناتو", "لجنة الجنة بلدية لديه"),
]


@dataclass
class Env:
    index: TantivyIndex
    articles: list[Article]
    docs: list[AnalyzedDoc]
    words: list[str]
    phrases: list[str]
    sources: list[str]
    topics: list[str]
    base: datetime


def _variant(rnd: random.Random, text: str) -> str:
    """`text` as feeds write it too: some words hashtagged, joined by _, or with clitics."""
    words = text.split()
    out = []
    i = 0
    while i < len(words):
        w = words[i]
        r = rnd.random()
        if r < 0.06 and i + 1 < len(words):
            out.append("#" + w + "_" + words[i + 1])
            i += 2
            continue
        if r < 0.1:
            w = "#" + w
        elif r < 0.16:
            w = rnd.choice(CLITICS) + w
        out.append(w)
        i += 1
    return " ".join(out)


def corpus(n_real: int = N_REAL, seed: int = 3) -> list[Article]:
    """Real articles (dates spread over the hours), variants of some of them, FIXED, and a few
    English ones; every article with its own link, so its own id."""
    tagger = build_tagger(load_config("config").topics)
    rnd = random.Random(seed)
    docs = topical_docs()[: n_real * 2: 2]
    out = []
    for i, d in enumerate(docs):
        day = datetime.strptime(d.docno.rsplit("-", 1)[1], "%Y%m%d").replace(tzinfo=UTC)
        published = day + timedelta(hours=i % 24, minutes=17)
        title, text = d.title, d.text
        if i % 5 == 0:
            title, text = _variant(rnd, title), _variant(rnd, text)
        out.append(make_article(title, text, source=d.source.lower(), link=f"https://ant.test/{i}/{d.docno}",
                                published=published))
    last = max(a.published for a in out)
    for j, (title, text) in enumerate(FIXED):
        out.append(make_article(title, text, source="fixed-ar", link=f"https://fixed.test/{j}",
                                published=last - timedelta(hours=3 * j + 1)))
    for j, (title, text) in enumerate([("NATO summit", "Ministers met in Brussels"),
                                       ("Kursk", "fighting near kursk_region #NATO")]):
        out.append(make_article(title, text, source="wire-en", link=f"https://en.test/{j}",
                                published=last - timedelta(days=j + 2), language="en"))
    out = [analyze_article(a, tagger) for a in out]
    assert len({a.id for a in out}) == len(out)
    return out


def query_material(articles: list[Article], seed: int = 5) -> tuple[list[str], list[str]]:
    """Words (as written, article-led, with clitics, _-joined, #-led) and 2-3 word phrases."""
    rnd = random.Random(seed)
    surface = [m.group() for a in articles for m in WORD_RE.finditer(a.title + " " + a.body)]
    words = sorted(set(rnd.sample(surface, min(1500, len(surface)))))
    extra = []
    for w in words[:400]:
        extra += [rnd.choice(CLITICS) + w, "#" + w, w + "_" + rnd.choice(words)]
    words += extra + ["كمال", "المال", "مال", "كامن", "الأمن", "أمن", "الناتو", "كورسك", "#شمال_الأطلسي",
                      "شمال", "الأطلسي", "قمة", "#قمة_لاهاي", "للناتو", "بكورسك", "nato", "NATO", "kursk"]
    phrases = ["مذكرة بودابست", "شمال الأطلسي", "حلف شمال الأطلسي", "قمة لاهاي", "الأمين العام"]
    for a in rnd.sample(articles, 150):
        toks = [m.group() for m in WORD_RE.finditer(a.body)]
        if len(toks) > 4:
            j = rnd.randrange(len(toks) - 3)
            phrases.append(" ".join(toks[j:j + rnd.choice([2, 3])]))
    return words, phrases


def build_env(tmp_path_factory) -> Env:
    arts = corpus()
    path = tmp_path_factory.mktemp("equality") / "raqib.db"
    store = Store(path)
    store.ingest(arts, [], {}, None)
    index = TantivyIndex(path)
    index.index_sync(arts)
    store.close()
    words, phrases = query_material(arts)
    sources = sorted({a.source for a in arts}) + ["bbc", "sky", "fixed", "cnn-arabic"]
    topics = ["nato", "kursk", "budapest_memorandum", "other"]
    return Env(index, arts, [analyzed_doc(a) for a in arts], words, phrases, sources, topics,
               max(a.published for a in arts) + timedelta(minutes=30))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = build_env(tmp_path_factory)
    yield e
    e.index.close_sync()
    e.index._pool.shutdown()


def queries(words: list[str], phrases: list[str], sources: list[str], topics: list[str]):
    """A hypothesis strategy over query strings of the whole language."""
    word = st.sampled_from(words)
    phrase = st.sampled_from(phrases).map(lambda p: f'"{p}"')
    field = st.sampled_from(["title:", "text:"])
    leaf = st.one_of(
        word, word, phrase,
        st.tuples(field, st.one_of(word, phrase)).map("".join),
        st.sampled_from(topics).map("topic:".__add__),
        st.sampled_from(sources).map("source:".__add__),
        st.sampled_from(LANGS).map("lang:".__add__),
        st.sampled_from(DATES).map("date:".__add__),
    )

    def combine(children):
        group = st.lists(children, min_size=2, max_size=3)
        return st.one_of(
            group.map(" ".join), group.map(" AND ".join), group.map(" OR ".join),
            group.map(lambda xs: "(" + " OR ".join(xs) + ")"),
            children.map(lambda x: f"NOT ({x})"), children.map(lambda x: f"-({x})"),
            word.map(lambda w: f"-{w}"),
        )

    return st.recursive(leaf, combine, max_leaves=8)


def property_settings(examples: int):
    """Bounded for CI (RAQIB_FUZZ_SCALE multiplies it, as `pytest -m fuzz` does); no example
    database written into the checkout."""
    examples = int(examples * float(os.environ.get("RAQIB_FUZZ_SCALE", "1")))
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


CLOCK_HOURS = [0, 5, 11, 23, 24, 25, 24 * 6, 24 * 7 + 1, 24 * 14, 24 * 30, 24 * 90, 24 * 200]


def fired(env: Env, query: str, now: datetime) -> set[str]:
    matcher = Matcher([("q", query)], clock=lambda: now)
    return {a.id for a, d in zip(env.articles, env.docs, strict=True) if matcher.match_doc(d)}


def found(env: Env, query: str, now: datetime) -> set[str]:
    env.index.clock = lambda: now
    page = env.index.search_sync(query, limit=MAX_LIMIT)
    ids = {h.article.id for h in page.hits}
    assert page.total == len(ids)
    return ids


def test_search_equals_alerts_for_any_query(env):
    sizes: list[int] = []

    @property_settings(200)
    @given(queries(env.words, env.phrases, env.sources, env.topics), st.sampled_from(CLOCK_HOURS))
    def check(query: str, hours: int):
        now = env.base + timedelta(hours=hours)
        node = parse(query)  # the drawn language always parses
        want = fired(env, query, now)
        assert found(env, query, now) == want, query
        assert want == {a.id for a, d in zip(env.articles, env.docs, strict=True)
                        if evaluate(node, d, now)}, query
        # what a percolator stores (clock-free) is a superset at this clock: the re-check is exact
        relaxed = without_relative_dates(node)
        assert want <= {a.id for a, d in zip(env.articles, env.docs, strict=True) if evaluate(relaxed, d)}
        sizes.append(len(want))

    check()
    # not vacuous: many draws find something, and not everything
    assert sum(0 < s < len(env.articles) for s in sizes) > len(sizes) // 4


def test_index_terms_are_the_analyzer_keys(env):
    """Every indexed term is an analyzer key and every key is a term: one tokenizer."""
    searcher = env.index._searcher()
    terms = {t for f in ("title", "body") for t, _ in searcher.terms_with_prefix(f, "")}
    keys = {k for a in env.articles for t in tokens(a.title) + tokens(a.body) for k in forms(t)}
    assert terms == keys
    assert not any("_" in k or "#" in k for k in keys)


# ---------------------------------------------------------------- fixed cases (issue 6) ----

def _both(env: Env, query: str, now: datetime | None = None) -> set[str]:
    now = now or env.base
    ids = found(env, query, now)
    assert ids == fired(env, query, now), query
    return {a.title for a in env.articles if a.id in ids and a.source == "fixed-ar"}


def test_hashtags_and_underscores_are_words_everywhere(env):
    assert _both(env, "قمة") >= {"حلف #شمال_الأطلسي"}  # text #قمة_لاهاي: search AND alert
    assert _both(env, '"قمة لاهاي"') == {"حلف #شمال_الأطلسي"}
    assert _both(env, "#قمة_لاهاي") == {"حلف #شمال_الأطلسي"}  # a query hashtag is the same phrase
    for q in ["شمال الأطلسي", '"شمال الأطلسي"', "#شمال_الأطلسي"]:
        assert _both(env, q) >= {"حلف #شمال_الأطلسي", "#شمال_الأطلسي"}, q
    tagged = {a.title for a in env.articles if "nato" in a.topics and a.source == "fixed-ar"}
    assert {"حلف #شمال_الأطلسي", "#شمال_الأطلسي"} <= tagged
    assert _both(env, "topic:nato") >= {"حلف #شمال_الأطلسي", "#شمال_الأطلسي"}


def test_short_clitic_readings_do_not_invent_words(env):
    assert "كمال يعود" not in _both(env, "المال")
    assert "المال العام" in _both(env, "المال")
    assert "خطر كامن" not in _both(env, "الأمن")
    assert "الأمن القومي" in _both(env, "الأمن")
    assert _both(env, "الناتو") >= {"اجتماع للناتو"}
    assert "كالناتو" in _both(env, "الناتو")  # ك with the article is still a proclitic
    assert _both(env, "كورسك") >= {"معارك بكورسك"}
    assert _both(env, '"مذكرة بودابست"') >= {"التجربة المريرة"}
    for word in ["للناتو", "بالناتو", "والناتو", "ناتو"]:
        assert "ناتو" in forms(tokens(word)[0])
    for word in ["وكورسك", "بكورسك"]:
        assert "كورسك" in forms(tokens(word)[0])
    assert "مال" not in forms("كمال") and "امن" not in forms("كامن") and "امل" not in forms("كامل")


def test_relative_dates_move_with_the_clock(env):
    """One matcher, compiled once; the article enters and leaves date:24h as time passes."""
    art = next(a for a in env.articles if a.title == "اجتماع للناتو")
    doc = env.docs[env.articles.index(art)]
    now = [art.published - timedelta(hours=1)]
    matcher = Matcher([("day", "الناتو date:24h"), ("not-day", "الناتو -date:24h")], clock=lambda: now[0])
    seen = []
    for hours in [-1, 0, 1, 23, 25, 24 * 7]:
        now[0] = art.published + timedelta(hours=hours)
        in_window = art.id in found(env, "الناتو date:24h", now[0])
        assert in_window == ("day" in matcher.match_doc(doc))
        assert (art.id in found(env, "الناتو -date:24h", now[0])) == ("not-day" in matcher.match_doc(doc))
        seen.append(in_window)
    assert seen == [True, True, True, True, False, False]


def test_a_data_dir_with_the_old_fts5_index_migrates(tmp_path):
    """The FTS5 table of the old embedded index is dropped and every article requeued, once."""
    arts = [make_article("حلف #شمال_الأطلسي", "#قمة_لاهاي"), make_article("مذكرة", "لمذكرة بودابست")]
    store = Store(tmp_path / "raqib.db")
    store.ingest(arts, [], {}, None)
    conn = sqlite3.connect(tmp_path / "raqib.db")
    conn.execute('CREATE VIRTUAL TABLE articles_fts USING fts5(title, body, tokenize = "ascii")')
    conn.execute("INSERT INTO articles_fts (rowid, title, body) VALUES (1, 'x', 'قمه_لاهاي')")
    conn.execute("UPDATE articles SET indexed = 1")
    conn.commit()
    index = TantivyIndex(tmp_path / "raqib.db")
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'articles_fts%'").fetchone()[0] == 0
    conn.close()
    assert {p.article.id for p in store.pending("indexed")} == {a.id for a in arts}  # back on the queue
    index.index_sync(arts)
    store.mark("indexed", [p.key for p in store.pending("indexed")])
    assert {h.article.id for h in index.search_sync("قمة").hits} == {arts[0].id}
    assert {h.article.id for h in index.search_sync('"مذكرة بودابست"').hits} == {arts[1].id}
    assert index.health_sync()["status"] == "green"
    index.close_sync()
    again = TantivyIndex(tmp_path / "raqib.db")  # nothing to migrate the second time
    assert store.pending("indexed") == [] and again.count_sync() == 2
    again.close_sync()
    store.close()


def test_a_lost_index_directory_requeues_every_article(tmp_path):
    """The store says articles are indexed but the index directory is new (deleted, or a
    restored backup of raqib.db alone): they go back on the queue instead of staying unfindable."""
    import shutil

    arts = [make_article("كورسك", "معارك بكورسك")]
    store = Store(tmp_path / "raqib.db")
    store.ingest(arts, [], {}, None)
    index = TantivyIndex(tmp_path / "raqib.db")
    index.index_sync(arts)
    store.mark("indexed", [p.key for p in store.pending("indexed")])
    index.close_sync()
    shutil.rmtree(tmp_path / "index")
    index = TantivyIndex(tmp_path / "raqib.db")
    assert [p.article.id for p in store.pending("indexed")] == [arts[0].id]
    index.close_sync()
    store.close()
