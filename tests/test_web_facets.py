"""Facets on both index backends: the same counts as the query language's reference answer
(evaluate over every stored article), on the ANT topical corpus."""

from __future__ import annotations

from collections import Counter

import pytest

from indexers.base import facet_lists
from monitor.analysis import analyzed_doc
from monitor.query import evaluate, parse
from tests.test_engine import _index_all, corpus, embedded, flavor_url, make_engine, stored, tagger  # noqa: F401

QUERIES = ["الناتو", "topic:kursk", "source:bbc", "روسيا -أوكرانيا", "date:2018-03 topic:nato", "lang:en",
           "NOT الناتو"]


def reference(arts, query: str):
    node = parse(query)
    hits = [a for a in arts if evaluate(node, analyzed_doc(a))]
    return facet_lists({"topic": Counter(t for a in hits for t in a.topics),
                        "source": Counter(a.source for a in hits),
                        "language": Counter(a.language for a in hits),
                        "day": Counter(a.published.strftime("%Y-%m-%d") for a in hits)})


def test_embedded_facets_are_the_reference_counts(embedded, stored):
    for q in QUERIES:
        assert embedded.facets_sync(q) == reference(stored, q), q


@pytest.mark.engine
async def test_engine_facets_equal_the_embedded_ones(make_engine, stored, embedded):
    ix = make_engine()
    await _index_all(ix, stored)
    for q in QUERIES:
        assert await ix.facets(q) == embedded.facets_sync(q), q
