"""The indexed matcher (anchors, word pairs, compiled predicates) decides exactly like the
plain evaluator of the query language, on real articles and thousands of generated rules."""

from __future__ import annotations

import random
from collections import Counter

from alerts.matcher import Matcher
from monitor.analysis import analyze_article, analyzed_doc
from monitor.arabic import tokens
from monitor.config import load_config
from monitor.query import evaluate, parse
from monitor.topics import build_tagger
from tests.corpus import topical_docs
from tests.helpers import make_article


def _rules(vocab: list[str], bigrams: list[str], n: int, rnd: random.Random) -> list[str]:
    w = lambda: rnd.choice(vocab)  # noqa: E731
    shapes = [
        lambda: w(), lambda: f"{w()} {w()}", lambda: f"{w()} {w()} {w()}", lambda: f'"{rnd.choice(bigrams)}"',
        lambda: f"({w()} OR {w()}) {w()}", lambda: f"{w()} topic:nato", lambda: f"({w()} OR {w()}) -{w()}",
        lambda: f"{w()} OR {w()} OR {w()}", lambda: f"title:{w()}", lambda: f'"{rnd.choice(bigrams)}" -{w()}',
        lambda: f"NOT {w()}", lambda: "topic:kursk OR topic:budapest_memorandum", lambda: f"lang:ar {w()} source:bbc",
    ]
    return [rnd.choice(shapes)() for _ in range(n)]


def test_matcher_equals_evaluate():
    tagger = build_tagger(load_config("config").topics)
    arts = [analyze_article(make_article(d.title, d.text, source=d.source.lower(), link=d.url), tagger)
            for d in topical_docs()[:300]]
    freq = Counter(t for a in arts for t in set(tokens(a.text)) if len(t) >= 3)
    vocab = [x for x, _ in freq.most_common(3000)[20:]]
    bf = Counter()
    for a in arts:
        ts = tokens(a.title)
        bf.update(f"{x} {y}" for x, y in zip(ts, ts[1:], strict=False))
    bigrams = [b for b, c in bf.most_common(500)]
    queries = _rules(vocab, bigrams, 3000, random.Random(11))
    matcher = Matcher((str(i), q) for i, q in enumerate(queries))
    nodes = [parse(q) for q in queries]
    total = 0
    for a in arts[:120]:
        doc = analyzed_doc(a)
        expected = {str(i) for i, n in enumerate(nodes) if evaluate(n, doc)}
        assert set(matcher.match_doc(doc)) == expected, a.title
        total += len(expected)
    assert total > 500  # the rules really do match things

    # the word-key loop takes CPython's fast dict-keys & set path only for an exact set
    assert type(analyzed_doc(arts[0]).all_keys) is set

    # remove: rules that DO match stop matching, every other rule still decides as before
    doc = analyzed_doc(next(a for a in arts if len(matcher.match_doc(analyzed_doc(a))) >= 10))
    before = set(matcher.match_doc(doc))
    gone = set(sorted(before, key=int)[:10])
    for rid in gone:
        matcher.remove(rid)
    assert set(matcher.match_doc(doc)) == before - gone
    for a in arts[:60]:
        d = analyzed_doc(a)
        assert set(matcher.match_doc(d)) == {str(i) for i, n in enumerate(nodes)
                                             if str(i) not in gone and evaluate(n, d)}, a.title
    back = min(gone, key=int)  # and a removed rule added again matches again
    matcher.add(back, queries[int(back)])
    assert set(matcher.match_doc(doc)) == before - gone | {back}
