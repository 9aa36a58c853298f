"""The Elasticsearch / OpenSearch backend against a REAL node (scripts/opensearch.sh).

The central claim is equality: on the ANT topical corpus the engine finds exactly the
articles the embedded index finds, for the same queries as tests/test_search.py, and its
percolator fires exactly the alerts of alerts.matcher.Matcher.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import random
import re
import socket
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp import web

from alerts.matcher import Matcher
from indexers import dsl
from indexers.engine import BulkIndexError, EngineIndex, make_client
from indexers.tantivy_index import TantivyIndex
from monitor.analysis import analyze_article
from monitor.arabic import PROCLITICS, forms, query_key, tokens
from monitor.config import load_config
from monitor.errors import ConfigError, IndexError_, QueryError
from monitor.query import parse
from monitor.store import Store
from monitor.topics import build_tagger
from tests.corpus import topical_docs
from tests.helpers import make_article
from tests.opensearch_node import NODES

from tests.test_search import QUERIES

pytestmark = pytest.mark.engine

# More of the language than QUERIES: Latin words, field phrases, sources, dates, nesting.
EXTRA_QUERIES = [
    "nato", 'title:"حلف شمال الأطلسي"', 'text:"مذكرة بودابست"', "source:bbc", "source:skynews",
    "source:cnn -الناتو", "lang:en", "date:2018..2018-05", "date:<2018-04-15 topic:nato",
    "date:>=2018-07 روسيا", "NOT (الناتو OR روسيا)", "-كورسك topic:kursk",
    "(الناتو OR topic:nato) -date:2018-03", "title:روسيا text:أوكرانيا", '"الأمين العام" OR title:ترامب',
    "للناتو", "بالناتو", "والناتو", "ناتو", "الأطلنطي", "بوتين NOT (موسكو OR كييف) lang:ar",
    '"شمال الأطلسي" -"حلف شمال الأطلسي"', "date:..", "2018", "title:2018",
]


# ------------------------------------------------------------------ fixtures ----

@pytest.fixture(scope="module")
def tagger():
    return build_tagger(load_config("config").topics)


@pytest.fixture(scope="module")
def corpus(tagger):
    """The ANT topical subset analyzed exactly like tests/test_search.py does."""
    arts = []
    for d in topical_docs():
        a = make_article(d.title, d.text, source=d.source.lower(), link=d.url,
                         published=datetime.strptime(d.docno.rsplit("-", 1)[1], "%Y%m%d").replace(tzinfo=UTC))
        arts.append(analyze_article(a, tagger))
    return arts


@pytest.fixture(scope="module")
def stored(corpus):
    """The corpus as the store keeps it: the subset has 20 pairs of articles with the same link
    (so the same id) and different texts; the store keeps the first, and the pipeline indexes
    what the store holds. Both indexes get exactly these."""
    first: dict[str, object] = {}
    for a in corpus:
        first.setdefault(a.id, a)
    return list(first.values())


@pytest.fixture(scope="module")
def queries(corpus):
    rnd = random.Random(7)  # the same random queries as tests/test_search.py
    vocab = [w for a in corpus[:50] for w in a.title.split() if len(w) > 3]
    randoms = [f"{rnd.choice(vocab)} OR {rnd.choice(vocab)}" for _ in range(10)]
    rnd2 = random.Random(11)  # and some of our own: ANDs, phrases, negations of corpus words
    for _ in range(10):
        a, b, c = rnd2.choice(vocab), rnd2.choice(vocab), rnd2.choice(vocab)
        randoms += [f"{a} {b}", f'"{a} {b}"', f"{a} -{c}"]
    return QUERIES + EXTRA_QUERIES + randoms


@pytest.fixture(scope="module")
def embedded(corpus, stored, tmp_path_factory):
    """The embedded index over the corpus (built once, used synchronously)."""
    path = tmp_path_factory.mktemp("embedded") / "raqib.db"
    store = Store(path)
    store.ingest(corpus, [], {}, None)
    assert [store.get(a.id) for a in stored] == stored
    index = TantivyIndex(path)
    index.index_sync(stored)
    yield index
    index.close_sync()
    index._pool.shutdown()
    store.close()


@pytest.fixture(params=list(NODES))
def flavor_url(request):
    """(flavor, url) of each real node: OpenSearch, Elasticsearch 9 and 8."""
    flavor = NODES[request.param][0]
    return flavor, request.getfixturevalue(f"{request.param}_url")


async def _drop(ix: EngineIndex) -> None:
    """Delete everything a test prefix created (by explicit names: ES refuses wildcards)."""
    c = ix.client
    try:
        found = await c.indices.get_alias(index=f"{ix.names.prefix}-*")
        names = list(getattr(found, "body", found))
        if names:
            await c.indices.delete(index=",".join(names))
    except Exception:
        pass
    try:
        await c.indices.delete_index_template(name=ix.names.template)
    except Exception:
        pass
    await ix.close()


@pytest.fixture
async def make_engine(flavor_url):
    flavor, url = flavor_url
    made: list[EngineIndex] = []

    def make(cls=EngineIndex, prefix: str | None = None, **kw) -> EngineIndex:
        kw.setdefault("replicas", 0)
        ix = cls(make_client(flavor, [url]), prefix=prefix or f"rqt-{uuid.uuid4().hex[:10]}",
                 flavor=flavor, **kw)
        made.append(ix)
        return ix

    yield make
    for ix in made:
        await _drop(ix)


def _ids(page) -> set[str]:
    return {h.article.id for h in page.hits}


async def _index_all(ix: EngineIndex, arts, batch: int = 200) -> None:
    for i in range(0, len(arts), batch):
        await ix.index(arts[i:i + batch])
    await ix.refresh()


# ------------------------------------------------------- pure translation ----

def test_surface_forms_are_the_inverse_of_forms(corpus):
    """k in forms(t)  <=>  t in surface_forms(k), on the corpus vocabulary."""
    vocab = sorted({t for a in corpus[:300] for t in tokens(a.text)})
    rnd = random.Random(3)
    toks = rnd.sample(vocab, 1500)
    keys = sorted({k for t in rnd.sample(vocab, 600) for k in forms(t)}
                  | {query_key(w) for a in corpus[:40] for w in a.title.split()}
                  | {"nato", "ab", "x", "ناتو", "كورسك", "ورسك", "2018", "بو"})
    for t in toks:  # completeness: every reading of a token finds the token
        for k in forms(t):
            assert t in dsl.surface_forms(k), (t, k)
    for k in keys:  # soundness and completeness over random pairs
        for t in toks:
            assert (k in forms(t)) == (t in dsl.surface_forms(k)), (t, k)
        for t in dsl.surface_forms(k):  # every surface form is a token reading back to k
            assert k in forms(t), (t, k)
    # a Latin key matches a token with an Arabic proclitic glued on, as forms() says
    assert "nato" in forms("وnato") and "وnato" in dsl.surface_forms("nato")
    assert dsl.surface_forms("بو") == frozenset({"بو"})  # below MIN_STEM: as written only
    # the regexp form (phrases, ranking) matches exactly the surface forms; Python's re reads
    # these escaped alternations the way Lucene does
    for k in keys[:300] + ["a.b", "x_y", "i\u0307stanbul", "ناتو"]:
        rx = dsl.surface_regexp(k)
        if rx is None:
            assert len(k) < 3
            continue
        for t in toks + sorted(dsl.surface_forms(k)) + ["و" + k + "x", "ال" + k[1:]]:
            assert bool(re.fullmatch(rx, t)) == (t in dsl.surface_forms(k)), (k, t)
    assert len(dsl.surface_forms("ناتو")) == len(PROCLITICS) + 1


def _walk(obj, parent=None):
    """Every (key, parent key) of a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, parent
            yield from _walk(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, parent)


def test_translation_never_uses_a_query_string_parser(queries):
    for q in queries:
        try:
            node = parse(q)
        except QueryError:
            continue
        body = dsl.search_body(node, size=10)
        keys = set(_walk(body))
        names = {k for k, _ in keys}
        assert not names & {"query_string", "simple_query_string", "multi_match", "match_phrase",
                            "combined_fields", "query_string_query"}, q
        assert all(parent == "span_multi" for k, parent in keys if k == "match"), q
    # the phrase shape: the longest word as terms, and span_near(slop 0, in order) of the words'
    # surface forms, as a span_multi regexp (or span_or / span_term for short words)
    q = dsl.to_dsl(parse('title:"مذكرة بودابست في"'))
    anchor, near = q["bool"]["must"]
    assert anchor == {"terms": {"title_tokens": sorted(dsl.surface_forms("بودابست"))}}
    near = near["span_near"]
    assert near["slop"] == 0 and near["in_order"] is True
    assert near["clauses"][0] == {"span_multi": {"match": {"regexp": {"title_tokens": {
        "value": dsl.surface_regexp("مذكره"), "flags": "NONE"}}}}}
    assert near["clauses"][2] == {"span_term": {"title_tokens": "في"}}
    assert dsl.to_dsl(parse("NOT الناتو")) == {"bool": {"must": [{"match_all": {}}], "must_not": [
        dsl.to_dsl(parse("الناتو"))]}}
    assert dsl.to_dsl(parse("source:bbc")) == {"bool": {"should": [
        {"term": {"source_key": "bbc"}}, {"prefix": {"source_key": "bbc-"}}], "minimum_should_match": 1}}


def test_cursor_round_trip_and_rejects_garbage():
    c = dsl.encode_cursor("relevance", [1.25, 1520000000000000, "abc"], 20)
    assert dsl.decode_cursor(c, "relevance") == ([1.25, 1520000000000000, "abc"], 20)
    for bad in ["", "!!", base64.urlsafe_b64encode(b'{"x":1}').decode(), c[:-3]]:
        with pytest.raises(QueryError):
            dsl.decode_cursor(bad, "relevance")
    with pytest.raises(QueryError):  # a date-sorted cursor is not a relevance one
        dsl.decode_cursor(dsl.encode_cursor("date", [1, "a"], 5), "relevance")


def test_layout_and_rollover_conditions():
    names = dsl.Names("raqib")
    t = dsl.article_template(names, shards=2, replicas=1)
    assert t["index_patterns"] == ["raqib-articles-*"]
    assert t["template"]["aliases"] == {"raqib-articles": {}}
    props = t["template"]["mappings"]["properties"]
    assert props["title_tokens"]["analyzer"] == "raqib_tokens"
    assert props["matches"] == {"type": "object", "enabled": False}
    assert props["title"]["fields"]["en"]["analyzer"] == "english" and "keyword" in props["title"]["fields"]
    assert dsl.first_index_body(names)["aliases"]["raqib-articles-write"] == {"is_write_index": True}
    assert dsl.percolator_mappings()["properties"]["query"] == {"type": "percolator"}
    assert dsl.rollover_body(dsl.rollover_conditions(max_docs=10, max_age="30d")) == {
        "conditions": {"max_docs": 10, "max_age": "30d"}}
    with pytest.raises(ValueError):
        dsl.rollover_conditions(max_docs=0)


async def test_credentials_come_only_from_the_environment(aiohttp_auth_server):
    url, seen = aiohttp_auth_server
    for flavor in ("opensearch", "elasticsearch"):
        for env, expect in [
            ({"RAQIB_INDEX_USERNAME": "raqib", "RAQIB_INDEX_PASSWORD": "s3cret"},
             "Basic " + base64.b64encode(b"raqib:s3cret").decode()),
            ({"RAQIB_INDEX_API_KEY": "a2V5"}, "ApiKey a2V5"),
            ({}, None),
        ]:
            seen.clear()
            client = make_client(flavor, [url], env=env, max_retries=0)
            try:
                await client.info()
            finally:
                await client.close()
            assert seen == [expect], (flavor, env)
    with pytest.raises(ConfigError):
        make_client("opensearch", [url], env={"RAQIB_INDEX_USERNAME": "raqib"})
    with pytest.raises(ConfigError):
        make_client("solr", [url], env={})  # type: ignore[arg-type]


@pytest.fixture
async def aiohttp_auth_server():
    seen: list[str | None] = []

    async def info(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(
            {"name": "fake", "cluster_name": "fake", "version": {"number": "9.0.0"},
             "tagline": "You Know, for Search"},
            headers={"X-Elastic-Product": "Elasticsearch"})

    app = web.Application()
    app.router.add_get("/", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
async def test_unreachable_cluster_raises_index_error(flavor):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    ix = EngineIndex(make_client(flavor, [f"http://127.0.0.1:{port}"], max_retries=0,
                                 request_timeout=5), flavor=flavor)
    try:
        arts = [make_article("اجتماع للناتو", "نص")]
        with pytest.raises(IndexError_):
            await ix.index(arts)
        for call in (ix.ensure_setup(), ix.search("الناتو"), ix.count(), ix.trends(),
                     ix.percolate(arts), ix.put_subscriptions([("a", "الناتو")]), ix.health()):
            with pytest.raises(IndexError_):
                await call
        ix._ready = True  # past setup, every call still fails cleanly
        with pytest.raises(IndexError_) as e:
            await ix.index(arts)
        assert arts[0].id in str(e.value)
        with pytest.raises(IndexError_):
            await ix.search("الناتو")
    finally:
        await ix.close()


# ------------------------------------------------------------- on a node ----

async def test_setup_is_idempotent_and_safe_concurrently(make_engine):
    ix = make_engine()
    await ix.ensure_setup()
    await ix.ensure_setup()
    # two workers starting at once on a fresh prefix
    prefix = f"rqt-{uuid.uuid4().hex[:10]}"
    a, b = make_engine(prefix=prefix), make_engine(prefix=prefix)
    await asyncio.gather(a.ensure_setup(), b.ensure_setup(), a.ensure_setup())
    for eng in (ix, a):
        aliases = await eng._aliases()
        assert list(aliases) == [eng.names.first_index]
        assert eng._write_index(aliases) == eng.names.first_index
        h = await eng.health()
        assert h["articles"] == 0 and h["subscriptions"] == 0 and h["write_index"] == eng.names.first_index
    await b.index([make_article("اجتماع للناتو", "نص")])
    await a.refresh()
    assert await a.count() == 1


async def test_search_finds_clitic_forms_with_the_embedded_highlights(make_engine, tmp_path, tagger):
    arts = [analyze_article(x, tagger) for x in [
        make_article("اجتماع للناتو", "نص أول"),
        make_article("تصريح", "قال إنه سيتصل بالناتو غدا"),
        make_article("خبر", "والنَّاتُو يرد على روسيا"),
        make_article("سيناتور أمريكي", "الناتج المحلي"),
        make_article("Nato summit", "Ministers met", language="en"),
    ]]
    store = Store(tmp_path / "raqib.db")
    store.ingest(arts, [], {}, None)
    emb = TantivyIndex(tmp_path / "raqib.db")
    await emb.index(arts)
    ix = make_engine()
    await _index_all(ix, arts)
    page = await ix.search("الناتو", limit=50)
    assert _ids(page) == {a.id for a in arts[:3]} and page.total == 3
    mine = {h.article.id: (h.title_marks, h.snippet) for h in page.hits}
    theirs = {h.article.id: (h.title_marks, h.snippet) for h in (await emb.search("الناتو", limit=50)).hits}
    assert mine == theirs
    assert any("بالناتو" in [s.text[m.start:m.end] for m in s.marks] for _, s in mine.values())
    assert {h.article for h in page.hits} == set(arts[:3])  # the article round-trips whole
    assert _ids(await ix.search("nato")) == {arts[4].id}
    with pytest.raises(QueryError):
        await ix.search("(كورسك")
    with pytest.raises(QueryError):
        await ix.search("الناتو", cursor="not-a-cursor")
    await emb.close()
    store.close()


async def test_long_phrases_stay_under_the_clause_limit(make_engine):
    """27 surface forms per word as span_or would pass Lucene's 1024-clause limit at a
    15-word phrase, and one such subscription would break every percolation."""
    words = ("قال الأمين العام لحلف شمال الأطلسي إن الحلف سيواصل دعم أوكرانيا في مواجهة روسيا "
             "خلال الأشهر المقبلة من أجل السلام والاستقرار في أوروبا الشرقية والغربية معا").split()
    text = " ".join(words)
    art, other = make_article("عنوان", text), make_article("خبر", "الناتو " + text[::-1])
    ix = make_engine()
    await _index_all(ix, [art, other])
    long_phrase = '"' + " ".join(words) + '"'
    many = " OR ".join(f'"{a} {b}"' for a, b in zip(words, words[1:], strict=False))
    assert _ids(await ix.search(long_phrase)) == {art.id}
    assert _ids(await ix.search(many)) == {art.id}
    assert _ids(await ix.search('"' + " ".join(words[:12]) + ' روسيا"')) == set()
    assert _ids(await ix.search(" ".join(words))) == {art.id}  # ranking over many words too
    await ix.put_subscriptions([("long", long_phrase), ("many", many), ("nato", "الناتو")])
    assert await ix.percolate([art, other]) == {art.id: ["long", "many"], other.id: ["nato"]}
    matcher = Matcher([("long", long_phrase), ("many", many), ("nato", "الناتو")])
    assert sorted(matcher.match(art)) == ["long", "many"] and matcher.match(other) == ["nato"]


async def test_reindexing_replaces_also_after_rollover(make_engine):
    arts = [make_article(f"خبر {i} عن الناتو", f"نص {i}") for i in range(5)]
    ix = make_engine()
    await _index_all(ix, arts)
    assert await ix.count() == 5
    changed = [make_article(f"عنوان جديد {i}", a.content, link=a.link) for i, a in enumerate(arts)]
    assert [c.id for c in changed] == [a.id for a in arts]
    await _index_all(ix, changed + changed[:2])  # duplicates inside one batch too
    assert await ix.count() == 5
    assert (await ix.search("جديد", limit=10)).total == 5
    assert (await ix.search("الناتو")).total == 0
    r = await ix.rollover(dsl.rollover_conditions(max_docs=1))
    assert r["rolled_over"] and r["new_index"].endswith("-000002")
    assert (await ix.rollover(dsl.rollover_conditions(max_docs=1000)))["rolled_over"] is False
    extra = make_article("خبر سادس", "نص")
    await _index_all(ix, arts + [extra])  # old ids go back to the old index
    assert await ix.count() == 6
    h = await ix.health()
    assert h["indices"] == {ix.names.first_index: 5, r["new_index"]: 1}
    assert h["write_index"] == r["new_index"]
    assert (await ix.search("الناتو", limit=10)).total == 5


async def test_retention_deletes_from_whichever_index_holds_each_article(make_engine):
    """Retention's delete(ids) on a cluster: across a rollover, ids not in the index are no
    error, and the rest of the articles stay."""
    arts = [make_article(f"خبر {i} عن كورسك", f"نص {i}") for i in range(4)]
    ix = make_engine()
    await _index_all(ix, arts[:2])
    await ix.rollover(dsl.rollover_conditions(max_docs=1))
    await _index_all(ix, arts[2:])
    await ix.delete([arts[0].id, arts[3].id, "not-indexed-at-all"])
    await ix.refresh()
    assert await ix.count() == 2
    assert _ids(await ix.search("كورسك", limit=10)) == {arts[1].id, arts[2].id}


async def test_a_broken_document_fails_alone_and_is_named(make_engine):
    arts = [make_article(f"خبر {i} عن الناتو", f"نص {i}") for i in range(6)]
    bad = arts[3].id

    class Broken(EngineIndex):
        def document(self, article):
            doc = super().document(article)
            if article.id == bad:
                doc["published_us"] = "not a number"  # mapping conflict: published_us is a long
            return doc

    ix = make_engine(Broken, max_retries=1, initial_backoff=0.1)
    with pytest.raises(IndexError_) as e:
        await ix.index(arts)
    assert isinstance(e.value, BulkIndexError)
    assert set(e.value.failed) == {bad} and bad in str(e.value)
    assert "mapper_parsing_exception" in e.value.failed[bad] or "parse" in e.value.failed[bad]
    assert sorted(e.value.indexed) == sorted(a.id for a in arts if a.id != bad)
    await ix.refresh()
    assert await ix.count() == 5
    assert _ids(await ix.search("الناتو", limit=10)) == {a.id for a in arts if a.id != bad}


# ------------------------------------------------------------- equality ----

PAGED_QUERIES = ["الناتو", "روسيا OR ترامب", "topic:nato", "date:..", "lang:ar الأطلسي"]


@pytest.fixture(scope="module")
def expected(embedded, queries):
    """What the embedded index finds: {query: ids} (QueryError when it does not parse)."""
    out: dict[str, object] = {}
    for q in queries + PAGED_QUERIES:
        try:
            out[q] = _ids(embedded.search_sync(q, limit=10_000))
        except QueryError:
            out[q] = QueryError
    return out


async def test_engine_and_embedded_index_find_the_same_articles(make_engine, stored, embedded, queries,
                                                                expected):
    ix = make_engine()
    await _index_all(ix, stored)
    assert await ix.count() == len(stored) == await embedded.count()
    nonempty = 0
    fixed = set(QUERIES + EXTRA_QUERIES)
    for q in queries:
        if expected[q] is QueryError:
            with pytest.raises(QueryError):
                await ix.search(q)
            continue
        page = await ix.search(q, limit=10_000)
        assert _ids(page) == expected[q], q
        assert page.total == len(expected[q]) and page.next_cursor is None, q
        nonempty += bool(page.total) and q in fixed
    assert nonempty >= len(fixed) - 6  # not vacuous (six find nothing in this corpus)
    # highlights and snippets are the embedded index's, mark for mark
    for q in ["الناتو", '"حلف شمال الأطلسي"', "كورسك OR بودابست"]:
        mine = {h.article.id: (h.title_marks, h.snippet) for h in (await ix.search(q, limit=10_000)).hits}
        theirs = {h.article.id: (h.title_marks, h.snippet)
                  for h in embedded.search_sync(q, limit=10_000).hits}
        assert mine == theirs, q


async def test_search_after_pages_return_every_hit_once(make_engine, stored, expected):
    ix = make_engine()
    await _index_all(ix, stored)
    for q in PAGED_QUERIES:
        want = expected[q]
        assert len(want) > 37, q
        for sort in ("relevance", "date"):
            seen: list[str] = []
            dates = []
            cursor = None
            pages = 0
            while True:
                page = await ix.search(q, limit=37, cursor=cursor, sort=sort)
                assert page.total == len(want), (q, sort)
                seen += [h.article.id for h in page.hits]
                dates += [h.article.published for h in page.hits]
                pages += 1
                cursor = page.next_cursor
                if cursor is None:
                    break
                assert len(page.hits) == 37
            assert len(seen) == len(set(seen)) == len(want) and set(seen) == want, (q, sort)
            assert pages == -(-len(want) // 37)
            if sort == "date":
                assert dates == sorted(dates, reverse=True)  # newest first
        first = await ix.search(q, limit=5)
        with pytest.raises(QueryError):  # a relevance cursor is no date cursor
            await ix.search(q, limit=5, cursor=first.next_cursor, sort="date")


async def test_trends_match_the_embedded_index(make_engine, stored, embedded):
    ix = make_engine()
    await _index_all(ix, stored)
    t0, t1 = datetime(2018, 3, 10, tzinfo=UTC), datetime(2018, 6, 1, tzinfo=UTC)
    for args in [dict(), dict(interval="hour"), dict(query="الناتو"), dict(query="source:bbc OR كورسك"),
                 dict(start=t0, end=t1), dict(query="روسيا", start=t0)]:
        mine = await ix.trends(**args)
        theirs = embedded.trends_sync(args.get("query"), args.get("interval", "day"),
                                      args.get("start"), args.get("end"))
        assert mine == theirs, args
    assert sum(b.count for b in await ix.trends()) > 100


async def test_percolator_fires_exactly_what_the_matcher_fires(make_engine, corpus, stored, queries):
    ok_queries = []
    for q in queries:
        try:
            parse(q)
            ok_queries.append(q)
        except QueryError:
            pass
    subs = [(f"s{i}", q) for i, q in enumerate(ok_queries)]
    matcher = Matcher(subs)
    ix = make_engine()
    await ix.ensure_setup()
    # a stale subscription that put_subscriptions must remove
    await ix.put_subscriptions([("old", "الناتو"), *subs[:3]])
    await ix.put_subscriptions(subs)
    assert (await ix.health())["subscriptions"] == len(subs)
    fired: dict[str, list[str]] = {}
    for i in range(0, len(stored), 100):
        fired.update(await ix.percolate(stored[i:i + 100]))
    assert set(fired) == {a.id for a in stored}
    mismatches = [(a.id, sorted(set(fired[a.id]) ^ set(matcher.match(a)))) for a in stored
                  if fired[a.id] != sorted(matcher.match(a))]
    assert not mismatches, mismatches[:5]
    # two versions of one id in a batch: the id gets what either version fires
    by_id: dict[str, list] = {}
    for a in corpus:
        by_id.setdefault(a.id, []).append(a)
    pair = next(v for v in by_id.values() if len(v) == 2 and matcher.match(v[0]) != matcher.match(v[1]))
    assert await ix.percolate(pair) == {pair[0].id: sorted(set(matcher.match(pair[0])) | set(matcher.match(pair[1])))}
    assert sum(map(len, fired.values())) > len(stored)  # not vacuous
    assert await ix.percolate(corpus[:1]) == {corpus[0].id: sorted(matcher.match(corpus[0]))}
    assert await ix.percolate([]) == {}
    with pytest.raises(QueryError):  # a bad query changes nothing
        await ix.put_subscriptions([("bad", "(كورسك")])
    assert (await ix.health())["subscriptions"] == len(subs)
    await ix.put_subscriptions([])
    assert await ix.percolate(corpus[:5]) == {a.id: [] for a in corpus[:5]}


def test_sqlite_install_needs_no_cluster_client(tmp_path):
    """The cluster clients are extras: with neither importable, the default SQLite setup
    runs, and choosing a cluster backend says in one line what to install."""
    import subprocess
    import sys

    from tests.e2e_setup import ROOT, write_config

    cfg = write_config(tmp_path, [])
    code = (
        "import sys\n"
        "for m in ('elasticsearch', 'elastic_transport', 'opensearchpy'): sys.modules[m] = None\n"
        "from raqib.cli import main\n"
        f"rc = main(['index', 'status', '--json', '--config', {str(cfg)!r}])\n"
        "from indexers.engine import make_client\n"
        "from monitor.errors import ConfigError\n"
        "for flavor in ('elasticsearch', 'opensearch'):\n"
        "    try:\n"
        "        make_client(flavor, ['http://127.0.0.1:9'])\n"
        "    except ConfigError as e:\n"
        "        print(e)\n"
        "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"backend": "sqlite"' in r.stdout
    assert "pip install 'raqib[elasticsearch]'" in r.stdout and "pip install 'raqib[opensearch]'" in r.stdout


def test_base_install_pulls_no_cluster_client():
    """The transitive requirements of `pip install raqib` (no extras), read from the installed
    packages' metadata: neither cluster client is among them, both are in the extras."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    def name(n: str) -> str:
        return re.sub(r"[-_.]+", "-", n).lower()

    seen: set[str] = set()
    todo = ["raqib"]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = distribution(n).requires or []
        except PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(name(r.name))
    assert len(seen) > 10  # really walked the tree
    assert not seen & {"elasticsearch", "elastic-transport", "opensearch-py"}, sorted(seen)
    extras = [Requirement(r) for r in distribution("raqib").requires or []]
    by_extra = {(name(r.name), str(r.marker)) for r in extras if r.marker}
    assert ("elasticsearch", 'extra == "elasticsearch"') in by_extra
    assert ("opensearch-py", 'extra == "opensearch"') in by_extra
    es = next(r for r in extras if name(r.name) == "elasticsearch")
    assert not es.specifier.contains("9.0.0") and es.specifier.contains("8.19.0")


async def test_node_scripts_act_on_their_own_run_dir_only(flavor_url, tmp_path):
    """Stopping another (empty) run dir leaves this session's node running: runs never
    touch each other's nodes (the old script killed every node of its cache)."""
    from tests.opensearch_node import run_script

    flavor, url = flavor_url
    script = "opensearch.sh" if flavor == "opensearch" else "elasticsearch.sh"
    other = tmp_path / "other-run"
    st = run_script(script, "status", "--run-dir", str(other), timeout=60)
    assert st.returncode == 1 and "not running" in st.stdout
    assert run_script(script, "stop", "--run-dir", str(other), timeout=120).returncode == 0
    ix = EngineIndex(make_client(flavor, [url], max_retries=0), flavor=flavor)
    try:
        h = await ix.client.cluster.health()
        assert getattr(h, "body", h)["status"] in ("green", "yellow")
    finally:
        await ix.close()


# ------------------------------------------------- shared cluster state ----

async def test_capabilities_are_probed_and_mappings_follow_them(make_engine, flavor_url):
    """OpenSearch here carries every module Raqib uses; Elastic's integ-test builds none of
    them. Either way the probe says so, the mappings use only what exists, and
    health()["server"] reports it with the supported and tested versions."""
    flavor, _ = flavor_url
    ix = make_engine()
    await ix.ensure_setup()
    caps = ix.capabilities
    assert caps is not None and caps.flavor == flavor and caps.version
    if flavor == "opensearch":
        assert caps.missing() == [] and ix.supports_percolation is True
    else:  # the test distribution (scripts/elasticsearch.sh), not a production cluster
        assert caps.version.split(".")[0] in ("8", "9")
        assert set(caps.missing()) == {"percolator", "arabic_analyzer", "english_analyzer",
                                       "whitespace_tokenizer", "delete_by_query"}
        assert ix.supports_percolation is False
    mapping = (await ix._api("mapping", ix.client.indices.get_mapping(index=ix.names.first_index)))
    props = mapping[ix.names.first_index]["mappings"]["properties"]
    assert ("en" in props["title"].get("fields", {})) == caps.english_analyzer
    assert props["title_tokens"]["analyzer"] == ("raqib_tokens" if caps.whitespace_tokenizer else "keyword")
    server = (await ix.health())["server"]
    assert server["version"] == caps.version and server["tested_versions"]
    assert server["alerts"] == ("percolator" if caps.percolator else
                                "embedded matcher (the cluster has no percolator)")
    assert server["capabilities"] == {k: getattr(caps, k) for k in server["capabilities"]}


async def test_a_restarting_worker_keeps_the_other_workers_subscriptions(make_engine):
    """put_subscriptions stores a worker's own changes only: a worker that starts (and so
    knows nothing it stored before) never deletes what another worker stored."""
    prefix = f"rqt-{uuid.uuid4().hex[:10]}"
    a, b = make_engine(prefix=prefix), make_engine(prefix=prefix)
    art = make_article("الناتو ومذكرة بودابست", "قال الأمين العام لحلف الناتو إن مذكرة بودابست قائمة")
    await a.put_subscriptions([("a1", "الناتو")])
    await b.put_subscriptions([("b1", '"مذكرة بودابست"'), ("b2", "كورسك")])
    restarted = make_engine(prefix=prefix)  # worker A again, after a restart
    await restarted.put_subscriptions([("a1", "الناتو")])
    shared = b.supports_percolation  # the percolator holds every worker's subscriptions
    assert (await b.percolate([art]))[art.id] == (["a1", "b1"] if shared else ["b1"])
    if shared:
        assert (await b.health())["subscriptions"] == 3
    # the one that removes a subscription removes it, and only it
    await restarted.sync_subscriptions([], ["a1"])
    await b.put_subscriptions([("b1", '"مذكرة بودابست"')])  # b2 dropped by its owner
    assert (await b.percolate([art]))[art.id] == ["b1"]
    assert (await restarted.percolate([art]))[art.id] == (["b1"] if shared else [])
    if shared:
        assert (await b.health())["subscriptions"] == 1
    with pytest.raises(QueryError):  # a bad query changes nothing
        await b.sync_subscriptions([("bad", "(كورسك")], ["b1"])
    assert (await b.percolate([art]))[art.id] == ["b1"]


async def test_delivery_claims_have_a_mapping_an_owner_and_a_retention(make_engine):
    ix = make_engine()
    other = make_engine(prefix=ix.names.prefix)
    ids = [f"d{i}" for i in range(5)]
    assert await ix.claim_deliveries(ids, "worker-a") == set(ids)
    assert await other.claim_deliveries(ids + ["d9"], "worker-b") == {"d9"}
    assert await ix.claim_deliveries(ids, "worker-a") == set(ids)  # a restart re-claims its own
    name = ix.names.deliveries
    mapping = (await ix._api("mapping", ix.client.indices.get_mapping(index=name)))[name]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"] == {"owner": {"type": "keyword"},
                                     "claimed_at": {"type": "date", "format": "epoch_millis"}}
    # retention: nothing is young enough to go by default; all of it is old a minute from now
    assert await ix.purge_claims(wait=True) in (0, None)
    assert await other.claim_deliveries(ids, "worker-b") == set()
    import time as _time
    assert await ix.purge_claims(before_ms=int(_time.time() * 1000) + 60_000, wait=True) == 6
    assert await other.claim_deliveries(ids, "worker-b") == set(ids)


# ---------------------------------------------------------- three nodes ----

@pytest.mark.slow
async def test_three_node_cluster_keeps_every_acknowledged_article(opensearch_cluster, corpus):
    cluster = opensearch_cluster
    ix = EngineIndex(make_client("opensearch", cluster.urls, request_timeout=30, max_retries=3),
                     prefix="rqt-cluster", flavor="opensearch", shards=3, replicas=1,
                     initial_backoff=0.2)
    try:
        await ix.ensure_setup()
        await ix.client.cluster.health(wait_for_status="green")
        batches = [corpus[i:i + 20] for i in range(0, len(corpus), 20)]
        kill_at = len(batches) // 3
        acknowledged: set[str] = set()
        retries = 0
        kill = None
        for n, batch in enumerate(batches):
            if n == kill_at:  # the crash happens while batches keep coming
                kill = asyncio.create_task(asyncio.to_thread(cluster.stop_node, 1, True))
            if n == 2 * kill_at:
                await kill  # the last third goes to a cluster that has lost node-1
            for _attempt in range(60):
                try:
                    await ix.index(batch)
                except IndexError_:  # as the pipeline does: keep the batch, try again
                    retries += 1
                    await asyncio.sleep(0.5)
                    continue
                acknowledged |= {a.id for a in batch}
                break
            else:
                pytest.fail(f"batch {n} never indexed")
            await asyncio.sleep(0.05)
        assert kill is not None and kill.done()
        await ix.refresh()
        page = await ix.search("date:..", limit=10_000)
        found = _ids(page)
        assert acknowledged <= found
        everything = {a.id for a in corpus}
        assert found == everything and page.total == len(everything)
        assert await ix.count() == len(everything)
        h = await ix.health()
        assert h["nodes"] == 2 and h["status"] in ("yellow", "green")
        nato = await ix.search("الناتو", limit=10_000)
        assert nato.total > 0
        print(f"\nthree nodes: {len(batches)} batches, {retries} retried after node-1 was killed")
    finally:
        await _drop(ix)


# ------------------------------------------------------------ back-off ----

ELASTIC_HEADERS = {"X-Elastic-Product": "Elasticsearch"}


@contextlib.asynccontextmanager
async def fake_cluster(prefix: str, bulk):
    """A loopback server that knows one layout's aliases and answers _bulk with `bulk`."""
    async def aliases(request: web.Request) -> web.Response:
        return web.json_response({f"{prefix}-articles-000001": {"aliases": {
            f"{prefix}-articles": {}, f"{prefix}-articles-write": {"is_write_index": True}}}},
            headers=ELASTIC_HEADERS)

    app = web.Application()
    app.router.add_get("/_alias/{name}", aliases)
    app.router.add_route("*", "/_bulk", bulk)  # POST (opensearch-py) or PUT (elasticsearch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def busy_cluster():
    """A fake cluster whose bulk endpoint says 429 (whole request, then one item) before
    accepting: the client must back off and retry, not give up or duplicate."""
    calls: list[list[str]] = []

    async def bulk(request: web.Request) -> web.Response:
        lines = [json.loads(x) for x in (await request.text()).splitlines() if x.strip()]
        ids = [x["index"]["_id"] for x in lines[::2]]
        calls.append(ids)
        h = ELASTIC_HEADERS
        if len(calls) == 1:
            return web.json_response({"error": {"type": "es_rejected_execution_exception",
                                                "reason": "queue full"}, "status": 429},
                                     status=429, headers=h)
        items = [{"index": {"_index": "rqt-busy-articles-000001", "_id": i,
                            "status": 429 if (len(calls) == 2 and n == 0) else 201,
                            **({"error": {"type": "es_rejected_execution_exception", "reason": "busy"}}
                               if (len(calls) == 2 and n == 0) else {})}}
                 for n, i in enumerate(ids)]
        return web.json_response({"took": 1, "errors": len(calls) == 2, "items": items}, headers=h)

    async with fake_cluster("rqt-busy", bulk) as url:
        yield url, calls


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
async def test_bulk_backs_off_and_retries_on_429(busy_cluster, flavor):
    url, calls = busy_cluster
    arts = [make_article(f"خبر {i}", "نص") for i in range(3)]
    ix = EngineIndex(make_client(flavor, [url], max_retries=0), prefix="rqt-busy", flavor=flavor,
                     max_retries=3, initial_backoff=0.05)
    ix._ready = True  # the fake cluster only knows aliases and bulk
    try:
        await ix.index(arts)
    finally:
        await ix.close()
    ids = [a.id for a in arts]
    assert calls == [ids, ids, ids[:1]]  # whole batch, whole batch, the one rejected item
    calls.clear()
    ix = EngineIndex(make_client(flavor, [url], max_retries=0), prefix="rqt-busy", flavor=flavor,
                     max_retries=0)
    ix._ready = True
    try:
        with pytest.raises(BulkIndexError) as e:  # without retries the rejection is reported
            await ix.index(arts)
    finally:
        await ix.close()
    assert set(e.value.failed) == set(ids) and "429" in str(e.value)


# ------------------------------------------------- the bulk path's documents ----

def test_match_fields_come_from_the_shipped_analysis():
    """The engine reads the tokens the parse worker shipped, never tokenizing again (a marked
    analysis shows which was used); without one it computes the same tokens itself."""
    tagger = build_tagger(load_config("config").topics)
    art = analyze_article(make_article("اجتماع لحلف الناتو", "قال الأمين العام للناتو"), tagger, "ar")
    assert dsl.match_doc(art)["body_tokens"] == " ".join(tokens(art.body))
    marked = dataclasses.replace(art, analysis=dataclasses.replace(art.analysis, title_tokens="marked"))
    assert dsl.match_doc(marked)["title_tokens"] == "marked"
    bare = make_article(art.title, art.body)
    assert dsl.match_doc(bare)["title_tokens"] == " ".join(tokens(bare.title))


@pytest.fixture
async def recording_cluster():
    """A fake cluster that accepts every bulk item and keeps the request lines."""
    lines: list[dict] = []

    async def bulk(request: web.Request) -> web.Response:
        got = [json.loads(x) for x in (await request.text()).splitlines() if x.strip()]
        lines.extend(got)
        items = [{"index": {"_index": a["index"]["_index"], "_id": a["index"]["_id"], "status": 201}}
                 for a in got[::2]]
        return web.json_response({"took": 1, "errors": False, "items": items}, headers=ELASTIC_HEADERS)

    async with fake_cluster("rqt-rec", bulk) as url:
        yield url, lines


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
async def test_bulk_sends_each_document_once_and_names_an_unserializable_one(recording_cluster, flavor):
    """Documents are serialized once and handed to the client as JSON text: the cluster gets
    exactly dsl.article_doc of each article; one that cannot be encoded fails alone, named."""
    url, lines = recording_cluster
    arts = [make_article(f"خبر {i} عن الناتو", f"نص {i}") for i in range(4)]
    bad = make_article("عنوان \ud800 مكسور", "نص")  # a lone surrogate: not encodable as UTF-8
    ix = EngineIndex(make_client(flavor, [url], max_retries=0), prefix="rqt-rec", flavor=flavor)
    ix._ready = True  # the fake cluster only knows aliases and bulk
    try:
        with pytest.raises(BulkIndexError) as e:
            await ix.index([*arts[:2], bad, *arts[2:]])
    finally:
        await ix.close()
    assert set(e.value.failed) == {bad.id} and "cannot serialize" in e.value.failed[bad.id]
    assert sorted(e.value.indexed) == sorted(a.id for a in arts)
    sent = {meta["index"]["_id"]: doc for meta, doc in zip(lines[::2], lines[1::2], strict=True)}
    assert sent == {a.id: dsl.article_doc(a) for a in arts}
