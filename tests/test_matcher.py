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


# ---- issue 9: positional phrases, document-frequency anchors, pseudo-keys, realistic rules ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from alerts.common_keys import COMMON_KEYS  # noqa: E402
from alerts.matcher import document_frequencies, phrase_at  # noqa: E402
from monitor.arabic import forms, query_key  # noqa: E402
from monitor.query import phrase_in  # noqa: E402

# tokens that share keys through their proclitics (والناتو, للناتو → ناتو) and a suffix that is
# not a form (سيناتو ends with ناتو): where a positional check could go wrong
_VOCAB = ["الناتو", "ناتو", "والناتو", "للناتو", "سيناتو", "كورسك", "بكورسك", "في", "علي", "امم",
          "الامم", "متحده", "المتحده", "nato", "x"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_VOCAB), max_size=30), st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=4))
def test_phrase_at_equals_phrase_in(toks, words):
    seq = [forms(t) for t in toks]
    joined = " " + " ".join(toks) + " "
    for keys in (tuple(words), tuple(query_key(w) for w in words)):
        expected = phrase_in(seq, keys)
        for a in range(len(keys)):  # whichever word the search starts from
            assert phrase_at(seq, joined, keys, a) == expected, (toks, keys, a)


def _real_docs(n):
    tagger = build_tagger(load_config("config").topics)
    arts = [analyze_article(make_article(d.title, d.text, source=d.source.lower(), link=d.url), tagger)
            for d in topical_docs()[:n]]
    return arts, [analyzed_doc(a) for a in arts]


def test_phrase_at_on_real_articles():
    """Every bigram and trigram of an article's body, and the same shifted by one word, decide
    alike by positions and by scanning (12k checks over 40 articles)."""
    _, docs = _real_docs(40)
    checked = 0
    for d in docs[:40]:
        joined = " " + " ".join(p[0] for p in d.body) + " "
        toks = [p[-1] for p in d.body]  # the shortest reading: a key the phrase may be written with
        for n in (2, 3):
            for i in range(0, max(0, len(toks) - n), 3):
                for keys in (tuple(toks[i:i + n]), tuple(toks[i + 1:i + n + 1][::-1])):
                    if len(keys) == n:
                        assert phrase_at(d.body, joined, keys, n - 1) == phrase_in(d.body, keys), keys
                        checked += 1
    assert checked > 2000


def test_anchors_avoid_frequent_keys():
    """A rule is filed under its rarest word: never under a function word when it has another,
    with the default frequencies (COMMON_KEYS) and with frequencies from articles."""
    assert COMMON_KEYS["في"] > 0.5 and COMMON_KEYS["علي"] > 0.5 and "ناتو" not in COMMON_KEYS
    m = Matcher([("a", "في الناتو"), ("b", "علي في كورسك"), ("c", '"في الناتو"'), ("d", "في"),
                 ("e", "(في OR علي) -بوتين")])
    assert m.filed_under("a") == {("ناتو", "في")}
    assert next(iter(m.filed_under("b")))[0] == "كورسك"
    assert m.filed_under("c") == {("ناتو", "في")}
    assert m.filed_under("d") == {("في", None)}  # nothing rarer to file it under
    # with frequencies measured on articles instead
    _, docs = _real_docs(200)
    df = document_frequencies(docs)
    assert 0.9 < df["في"] <= 1.0 and all(0 < v <= 1 for v in df.values())
    w = min((k for k in docs[0].all_keys if len(k) > 3 and query_key(k) == k), key=lambda k: (df[k], k))
    m = Matcher([("x", f"من {w} في")], df=df)
    assert next(iter(m.filed_under("x")))[0] == w


def _realistic_rules(docs, df, rnd, n):
    """Rules in every shape the matcher files differently: names, phrases (title-only, body-only,
    excluded, OR-ed), word sets, OR-lists narrowed by topic or language, exclusions."""
    out = []
    for _ in range(n):
        d = rnd.choice(docs)
        body = [p[0] for p in d.body] or ["x"]
        rare = sorted(d.all_keys, key=lambda k: df[k])[:12]
        w = lambda: rnd.choice(rare)  # noqa: E731
        i = rnd.randrange(len(body))
        ph = '"' + " ".join(body[i:i + rnd.randint(2, 4)]) + '"'
        out.append(rnd.choice([
            w(), ph, f"title:{ph}", f"text:{ph}", f"{ph} -{w()}", f"{ph} OR {w()}", f"NOT {ph}",
            f"{w()} {w()}", f"{w()} {w()} {w()}", f"({w()} OR {w()}) topic:nato", f"{w()} lang:ar",
            f"({w()} OR {w()}) -{w()} {w()}", f"{w()} -{w()} -{w()}", f"lang:en OR {w()}",
            f"{ph} topic:kursk", f"{w()} source:{rnd.choice(['bbc', 'cnn', 'skynews'])}", "topic:nato lang:ar",
        ]))
    return out


def test_realistic_rules_equal_evaluate():
    """Rules written from some articles, matched on others (out of sample) and on their own,
    decide exactly as the plain evaluator, with frequencies given and with the default."""
    arts, docs = _real_docs(260)
    df = document_frequencies(docs[:200])
    queries = _realistic_rules(docs[:200], df, random.Random(5), 4000)
    nodes = [parse(q) for q in queries]
    total = 0
    for m in (Matcher(((str(i), q) for i, q in enumerate(queries)), df=df),
              Matcher((str(i), q) for i, q in enumerate(queries))):
        for d in docs[150:260]:
            expected = {str(i) for i, n in enumerate(nodes) if evaluate(n, d)}
            assert set(m.match_doc(d)) == expected
            total += len(expected)
    assert total > 1000


def test_subscriptions_add_warns_about_a_broad_rule(tmp_path):
    """A rule matching more than 5 % of the stored articles gets one warning line; a narrow
    rule gets none."""
    from tests.test_cli import _stored, raqib

    _stored(tmp_path, 120)  # every title has الناتو; one has the word 7
    broad = raqib("subscriptions", "add", "b", "الناتو", "--channel", "log", "--dry-run", "--data-dir", str(tmp_path))
    assert broad.returncode == 0, broad.stderr
    assert "120 stored articles match" in broad.stdout
    warning = [ln for ln in broad.stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "100% of the stored articles" in warning[0], broad.stderr
    narrow = raqib("subscriptions", "add", "n", "الناتو 7", "--channel", "log", "--dry-run",
                   "--data-dir", str(tmp_path))
    assert narrow.returncode == 0 and "1 stored articles match" in narrow.stdout, narrow.stdout
    assert "warning" not in narrow.stderr
