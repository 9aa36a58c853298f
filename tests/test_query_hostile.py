"""A query language that cannot crash: whatever the text, parsing, searching, matching and
translating end in a result or one QueryError line — never a traceback, never SQLite's or
FTS5's own words, never a number that overflows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.matcher import Matcher
from indexers import dsl
from indexers.tantivy_index import TantivyIndex
from monitor.analysis import analyzed_doc
from monitor.errors import IndexError_, QueryError
from monitor.query import MAX_DEPTH, MAX_LEAVES, FIELDS, Node, parse, to_string, validate
from monitor.store import Store
from tests.helpers import make_article
from tests.test_equality_property import property_settings

TOPICS = ["nato", "kursk", "budapest_memorandum"]
SOURCES = ["bbc-arabic", "cnn-arabic", "skynews"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    arts = [make_article("اجتماع للناتو", "قمة #شمال_الأطلسي في لاهاي", source="bbc-arabic"),
            make_article("كورسك", "معارك بكورسك", source="skynews"),
            make_article("NATO", "a b c d e", source="cnn-arabic", language="en")]
    path = tmp_path_factory.mktemp("hostile") / "raqib.db"
    store = Store(path)
    store.ingest(arts, [], {}, None)
    ix = TantivyIndex(path)
    ix.index_sync(arts)
    ix.test_docs = [analyzed_doc(a) for a in arts]
    yield ix
    ix.close_sync()
    ix._pool.shutdown()
    store.close()


def _one_line_query_error(query: str, *, limit: int = 20, cursor: str | None = None,
                          index: TantivyIndex | None = None) -> str:
    with pytest.raises(QueryError) as err:
        node = parse(query)
        if index is not None:
            index.search_sync(query, limit=limit, cursor=cursor)
        else:  # pragma: no cover - parse was expected to refuse
            raise AssertionError(f"parsed: {node}")
    text = str(err.value)
    assert "\n" not in text and "sqlite" not in text.lower() and "fts5" not in text.lower()
    assert len(text) < 400  # a long query is quoted in part, around the error
    return text


@pytest.mark.parametrize("query, says", [
    ("NOT (" * 200 + "x" + ")" * 200, "nests deeper"),
    ("(" * 250 + "x" + ")" * 250, "nests deeper"),
    ("-(" * 1000 + "x" + ")" * 1000, "nests deeper"),
    ("NOT " * 500 + "x", "nests deeper"),
    ("x" * 5000, "at most"),
    ("a " * (MAX_LEAVES + 1), f"more than {MAX_LEAVES}"),
    ('"' + "كلمة " * (MAX_LEAVES + 1) + '"', f"more than {MAX_LEAVES}"),
    ("date:9999999d", "relative date"),
    ("date:99999999999999999999h", "relative date"),
    ("date:0h", "relative date"),
    ("date:>9999-12-31", "out of range"),
    ("date:<0001-01-01", "out of range"),
    ("date:9999", "out of range"),
    ("date:2024-13", "month"),
    ("date:2025..2024", "ends before it starts"),
    ("foo:bar", "unknown field 'foo'"),
    ("lang:123", "language code"),
    ('a "unclosed', "unclosed quote"),
    ("-(", "expected"),
])
def test_hostile_queries_are_one_line_errors(query, says):
    assert says in _one_line_query_error(query)


def test_unknown_field_lists_the_valid_ones():
    text = _one_line_query_error("foo:bar")
    assert all(f in text for f in FIELDS)
    assert parse('"foo:bar"')  # quoted, it is text
    assert parse("12:30") and parse("Update: x")  # not field-like: no error


def test_validate_names_unknown_topics_and_sources():
    validate(parse("topic:nato source:bbc OR source:skynews -topic:kursk"), TOPICS, SOURCES)
    with pytest.raises(QueryError, match=r"unknown topic 'natoo' \(topics: budapest_memorandum, kursk, nato\)"):
        validate(parse("الناتو OR NOT topic:natoo"), TOPICS, SOURCES)
    with pytest.raises(QueryError, match=r"unknown source 'nosuchfeed' \(sources: bbc-arabic, cnn-arabic, skynews\)"):
        validate(parse("(source:nosuchfeed)"), TOPICS, SOURCES)
    with pytest.raises(QueryError, match="unknown source 'bbc-a'"):  # a prefix must end at a dash
        validate(parse("source:bbc-a"), TOPICS, SOURCES)
    with pytest.raises(QueryError, match="none configured"):
        validate(parse("topic:nato"), [], SOURCES)


@pytest.mark.parametrize("limit, cursor", [(0, None), (-5, None), (10**20, None), (True, None),
                                           (20, "o:" + "9" * 30), (20, "o:-1"), (20, "x:1"), (20, "o:²")])
def test_paging_numbers_are_range_checked(index, limit, cursor):
    _one_line_query_error("الناتو", limit=limit, cursor=cursor, index=index)


@pytest.mark.parametrize("query", [
    " OR ".join(f"w{i}" for i in range(MAX_LEAVES)),
    " ".join(f"w{i}" for i in range(MAX_LEAVES)),
    " ".join(f"-w{i}" for i in range(MAX_LEAVES - 1)) + " a",
    '"' + " ".join(["a", "b", "c", "d"] * (MAX_LEAVES // 4)) + '"',
    "(" * (MAX_DEPTH - 1) + "a OR (b c) OR NOT d" + ")" * (MAX_DEPTH - 1),
    "NOT " * (MAX_DEPTH - 1) + "a",
    " OR ".join(f'"w{i} a"' for i in range(MAX_LEAVES // 2)),
    " OR ".join(f"topic:t{i}" for i in range(MAX_LEAVES)),
])
def test_queries_at_the_limits_run_everywhere(index, query):
    """What the limits let through, the embedded index, the matcher and the DSL all take."""
    node = parse(query)
    index.search_sync(query, limit=100)
    Matcher([("q", query)]).match_doc(index.test_docs[0])
    dsl.search_body(node, size=10)
    dsl.subscription_doc("q", query, node)


def test_index_errors_never_reach_the_user(index, monkeypatch):
    def broken(*_a, **_k):
        raise ValueError("tantivy: An invalid argument was passed")
    monkeypatch.setattr(index, "_by_score", broken)
    with pytest.raises(IndexError_) as err:
        index.search_sync("الناتو")
    text = str(err.value)
    assert "\n" not in text and "tantivy" not in text.lower() and "reindex" in text


# ------------------------------------------------------------------------- fuzz ----

PIECES = ["a", "الناتو", "كورسك", " ", " ", "(", ")", '"', "«", "»", "“", "”", "-", ":", "#", "_",
          "OR", "AND", "NOT", "title:", "text:", "topic:", "source:", "lang:", "date:", "nato",
          "24h", "7d", "9999", "2024-12", "..", ">=", "<", "0", "99999999999999999999", "\n", "\u200f",
          "\u064b", "*", "^", "NEAR", "{", "}", "+", "'", "\\", "\x00", "\ud7ff", "é", "İ"]


def _exercise(index: TantivyIndex, query: str) -> None:
    """Everything a query goes through; only QueryError may come out."""
    try:
        node = parse(query)
    except QueryError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(node, Node.__args__)  # type: ignore[attr-defined]
    try:
        index.search_sync(query, limit=50)
    except QueryError as e:
        assert "sqlite" not in str(e).lower() and "fts5" not in str(e).lower()
    matcher = Matcher([("q", query)])
    for d in index.test_docs:
        matcher.match_doc(d)
    dsl.search_body(node, size=10)
    dsl.subscription_doc("q", query, node)
    try:
        validate(node, TOPICS, SOURCES)
    except QueryError:
        pass
    try:
        parse(to_string(node))
    except QueryError:
        pass


def test_fuzz_random_text(index):
    @property_settings(600)
    @given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(PIECES), max_size=60).map("".join)))
    def check(query):
        _exercise(index, query)

    check()


def test_fuzz_structured_nesting(index):
    wrappers = st.sampled_from(["(%s)", "NOT %s", "-(%s)", "NOT (%s)", "(%s OR b)", "a (%s)", "%s -c"])

    @property_settings(200)
    @given(st.lists(wrappers, min_size=1, max_size=1000),
           st.sampled_from(["x", '"a b"', "topic:nato", "date:24h", "title:الناتو"]))
    def check(layers, core):
        query = core
        for w in layers:
            query = w % query
        if len(query) > 4000:
            query = query[:4000]
        _exercise(index, query)

    check()
    for depth in (MAX_DEPTH + 1, 100, 1000):
        assert "nests deeper" in _one_line_query_error("(" * depth + "x" + ")" * depth)
