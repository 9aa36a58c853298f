"""(b) Alert matching: N generated subscriptions in the query language against real articles.

    python bench/matching.py [--set broad|realistic|both] [--subs 100000] [--articles 3000] [--runs 3]

Articles are out of sample: the ANT corpus (distinct links) is sorted by publication time, the
newest --articles are matched, and rules and document frequencies come only from the older
ones, as subscriptions are written from past news and matched against new articles.

Two rule sets:
- *broad* (the generator measured since issue 3): words of corpus frequency rank 1,000–50,000
  over --vocab-articles articles and real title bigrams, in the shapes of generate_broad().
  Stripping a word's article often turns it into a function word (العلي → علي ≈ على), so a
  few per cent of these rules match a large share of all articles.
- *realistic* (generate_realistic()): what desks write: names and phrases of 1–5 terms taken
  from one older article, about 30 % phrases, about 20 % with a topic, source or NOT filter,
  every single term (and a phrase's rarest word) a key in 0.01–0.1 % of the older articles.

Measured on one core (--core): match_doc over the analyzed articles, median of --runs runs,
with the load average at each run's start and end (other work may share the machine). The
analysis (analyzed_doc, done once per article for the index and the matcher alike) is timed
separately. Every article's match set is asserted EQUAL to the previous matcher's (the
alerts/matcher.py of --reference, loaded from git), whose match time is measured in the same
run for a same-run ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

from common import Timer, ant_articles, code_revision, emit

from alerts.matcher import Matcher, document_frequencies
from monitor.analysis import analyze_article, analyzed_doc
from monitor.arabic import forms, query_key, tokens
from monitor.config import load_config
from monitor.topics import build_tagger

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "c847364"  # the matcher before issue 9 (word pairs, frozenset fix applied)


def generate_broad(n: int, vocab: list[str], bigrams: list[str], rnd: random.Random) -> list[str]:
    """Rules in the shapes monitoring desks write: mostly names (real bigrams from the
    corpus, as phrases or as two words), single specific words, OR-lists narrowed by a
    topic or another word, filters, exclusions."""
    topics = ["nato", "kursk", "budapest_memorandum"]
    out = []
    for _ in range(n):
        w = lambda: rnd.choice(vocab)  # noqa: E731
        shape = rnd.random()
        if shape < 0.15:
            q = w()
        elif shape < 0.40:
            q = f"{w()} {w()}"
        elif shape < 0.60:
            q = f'"{rnd.choice(bigrams)}"'
        elif shape < 0.75:
            q = "(" + " OR ".join(w() for _ in range(rnd.randint(2, 4))) + f") {w()}"
        elif shape < 0.85:
            q = f"{w()} topic:{rnd.choice(topics)}" if rnd.random() < 0.5 else f"{w()} lang:ar"
        elif shape < 0.92:
            q = f"({w()} OR {w()}) -{w()}"
        else:
            q = " OR ".join(w() for _ in range(rnd.randint(2, 3)))
        out.append(q)
    return out


def generate_realistic(n: int, articles: list, df: dict[str, float], band: tuple[float, float],
                       topics: list[str], rnd: random.Random) -> list[str]:
    """Rules written from one older article each: a name (one rare word), a phrase of 2–5
    consecutive words around a rare word (~30 %), two or three of its rare words together, an
    OR of two; ~20 % narrowed by a topic, the article's source, or excluding another word."""
    lo, hi = band
    rare: dict[str, bool] = {}
    per_article = []
    for a in articles:
        toks = tokens(a.title) + tokens(a.text)
        for t in set(toks) - rare.keys():
            # a name as written, not a conjunction glued to one (وجميله: a bare و is kept)
            rare[t] = (lo <= df.get(query_key(t), 0) <= hi and len(t) >= 3 and not t.isdigit()
                       and (len(forms(t)) == 1 or query_key(t) != t))
        idx = [i for i, t in enumerate(toks) if rare[t]]
        words = list(dict.fromkeys(toks[i] for i in idx))
        if len(words) >= 2:
            per_article.append((a, toks, idx, words))
    common = sorted(k for k, s in df.items() if 0.001 < s <= 0.02 and len(k) >= 3)
    out = []
    while len(out) < n:
        a, toks, idx, words = rnd.choice(per_article)
        shape = rnd.random()
        if shape < 0.30:
            i = rnd.choice(idx)
            length = rnd.choice((2, 2, 2, 3, 3, 4, 5))
            start = max(0, min(i - rnd.randrange(length), len(toks) - length))
            q = '"' + " ".join(toks[start:start + length]) + '"'
        elif shape < 0.65:
            q = rnd.choice(words)
        elif shape < 0.88:
            q = " ".join(rnd.sample(words, min(len(words), rnd.choice((2, 2, 3)))))
        else:
            q = " OR ".join(rnd.sample(words, 2))
            q = f"({q})" if rnd.random() < 0.2 else q
        f = rnd.random()
        if f < 0.07:
            q = f"{q} topic:{rnd.choice(topics)}"
        elif f < 0.14:
            q = f"{q} source:{a.source}"
        elif f < 0.20:
            q = f"{q} -{rnd.choice(common)}"
        out.append(q)
    return out


def reference_matcher(rev: str):
    """The Matcher class of alerts/matcher.py at git revision `rev` (read with git show)."""
    src = subprocess.run(["git", "--no-optional-locks", "show", f"{rev}:alerts/matcher.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("matcher_reference", loader=None)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["matcher_reference"] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:alerts/matcher.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod.Matcher


def load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(name: str, queries: list[str], docs: list, df: dict[str, float], runs: int, rev: str) -> dict:
    with Timer() as t_build:
        matcher = Matcher(((str(i), q) for i, q in enumerate(queries)), df=df)
    timings = []
    for _ in range(runs):
        before = load()
        with Timer() as t:  # matches counted, not kept (as the service turns them into alerts)
            for d in docs:
                len(matcher.match_doc(d))
        timings.append({"seconds": round(t.wall, 3), "cpu_seconds": round(t.cpu, 3),
                        "articles_per_s": round(len(docs) / t.wall), "load_start": before, "load_end": load()})
    got = [matcher.match_doc(d) for d in docs]
    ref = reference_matcher(rev)((str(i), q) for i, q in enumerate(queries))
    with Timer() as t_ref:
        expected = [ref.match_doc(d) for d in docs]
    differ = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if set(g) != set(e)]
    assert not differ, f"{name}: {len(differ)} articles match differently from the reference matcher"
    matches = sum(len(g) for g in got)
    per_rule = Counter(r for g in got for r in g)
    median = statistics.median(t["seconds"] for t in timings)
    median_cpu = statistics.median(t["cpu_seconds"] for t in timings)
    return {"set": name, "subscriptions": len(queries), "articles": len(docs), "example_rules": queries[:6],
            "matches": matches, "matches_per_article": round(matches / len(docs), 2),
            "rules_matching_over_5pct_of_articles": sum(1 for c in per_rule.values() if c > 0.05 * len(docs)),
            "build_seconds": round(t_build.wall, 2), "runs": timings,
            "median_match_seconds": median, "articles_per_s_match_only": round(len(docs) / median),
            "median_match_cpu_seconds": median_cpu, "articles_per_cpu_s": round(len(docs) / median_cpu),
            "reference": {"revision": rev, "match_seconds": round(t_ref.wall, 3),
                          "articles_per_s_match_only": round(len(docs) / t_ref.wall)},
            "speedup_same_run": round(t_ref.wall / median, 2),
            "match_sets_equal_to_reference": True}


def write_common_keys(path: str, docs: list) -> None:
    """alerts/common_keys.py: keys in at least 2 % of `docs`, with their share (per mille)."""
    import textwrap

    n = len(docs)
    counts = Counter(k for d in docs for k in d.all_keys)
    items = [(k, c) for k, c in counts.most_common() if c / n >= 0.02]
    table = textwrap.wrap(" ".join(f"{k}:{round(1000 * c / n)}" for k, c in items), 96)
    Path(path).write_text("\n".join([
        '"""Keys frequent in Arabic news, with the share of articles holding each (per mille): the',
        "default document frequencies the alert matcher anchors by, so a rule is never filed under a",
        "function word (في, علي, الي, …) when it has a rarer word. Measured on the "
        f"{n:,} distinct", f"articles of the ANT corpus (keys in at least 2 % of them: {len(items)}); "
        "regenerate with", '`python bench/matching.py --write-common-keys alerts/common_keys.py`."""',
        "", '_TABLE = """', *table, '"""', "",
        "COMMON_KEYS: dict[str, float] = {k: int(v) / 1000 for k, _, v in "
        '(e.rpartition(":") for e in _TABLE.split())}', ""]), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=("broad", "realistic", "both"), default="both")
    ap.add_argument("--subs", type=int, default=100_000)
    ap.add_argument("--articles", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-rank", type=int, default=1000)
    ap.add_argument("--max-rank", type=int, default=50_000)
    ap.add_argument("--vocab-articles", type=int, default=10_000)
    ap.add_argument("--band", type=float, nargs=2, default=(0.0001, 0.001),
                    help="document-frequency band of the realistic rules' keys (shares)")
    ap.add_argument("--reference", default=REFERENCE, help="git revision of the previous matcher")
    ap.add_argument("--core", type=int, default=None, help="the one core to run on (default: the first)")
    ap.add_argument("--write-common-keys", metavar="PATH", help="regenerate alerts/common_keys.py and exit")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core if args.core is not None else min(os.sched_getaffinity(0))})
    tagger = build_tagger(load_config(ROOT / "config").topics)
    seen: set[str] = set()
    pool = sorted((a for a in ant_articles() if not (a.link in seen or seen.add(a.link))),
                  key=lambda a: a.published)
    if args.write_common_keys:
        write_common_keys(args.write_common_keys, [analyzed_doc(a) for a in pool])
        return
    older, newer = pool[:-args.articles], pool[-args.articles:]
    arts = [analyze_article(a, tagger, "ar") for a in newer]
    with Timer() as t_an:
        docs = [analyzed_doc(a) for a in arts]
    # document frequencies from the older articles only: what a service knows from its store
    df = document_frequencies(analyzed_doc(a) for a in older)
    results = []
    if args.set in ("broad", "both"):
        sample = older[-args.vocab_articles:]
        freq = Counter(t for a in sample for t in set(tokens(a.text)) if len(t) >= 3 and not t.isdigit())
        vocab = sorted(freq, key=lambda w: (-freq[w], w))[args.min_rank:args.max_rank]
        words = set(vocab)
        bigram_freq: Counter[str] = Counter()
        for a in sample:
            ts = tokens(a.title)
            bigram_freq.update(f"{x} {y}" for x, y in zip(ts, ts[1:], strict=False) if x in words and y in words)
        bigrams = sorted((b for b, c in bigram_freq.items() if c >= 2), key=lambda b: (-bigram_freq[b], b)) or vocab
        queries = generate_broad(args.subs, vocab, bigrams, random.Random(args.seed))
        results.append(measure("broad", queries, docs, df, args.runs, args.reference)
                       | {"vocabulary_ranks": [args.min_rank, args.max_rank]})
        print(f"broad: {results[-1]['articles_per_s_match_only']} articles/s", file=sys.stderr)
    if args.set in ("realistic", "both"):
        topics = sorted({t for a in arts for t in a.topics} | {"nato", "kursk", "budapest_memorandum"})
        queries = generate_realistic(args.subs, older[-args.vocab_articles:], df, tuple(args.band), topics,
                                     random.Random(args.seed))
        results.append(measure("realistic", queries, docs, df, args.runs, args.reference)
                       | {"key_df_band": list(args.band)})
    emit({"benchmark": "alert-matching", **code_revision(), "core": sorted(os.sched_getaffinity(0)),
          "articles": {"matched": len(docs), "newest": str(newer[-1].published), "oldest": str(newer[0].published),
                       "rules_and_df_from": len(older)},
          "analyze_seconds": round(t_an.wall, 3), "analyze_articles_per_s": round(len(docs) / t_an.wall),
          "results": results, "targets_articles_per_s": {"broad": 1000, "realistic": 2000}})


if __name__ == "__main__":
    sys.exit(main())
