"""(b) Alert matching: N generated subscriptions in the query language against real articles.

    python bench/matching.py [--subs 100000] [--articles 3000]

Rules are drawn from the corpus's own vocabulary (frequencies over --vocab-articles real
articles): by default words ranked 1,000–50,000 — names, places and specific terms, what
monitoring rules are written about (--min-rank 200 --max-rank 20000 is a broader stress
case). Rules take the shapes monitoring desks write (see generate()).
Measured on one core, articles analyzed and matched (alert items not built).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from common import Timer, ant_articles, emit, pin_one_core

from alerts.matcher import Matcher
from monitor.analysis import analyze_article, analyzed_doc
from monitor.arabic import tokens
from monitor.config import load_config
from monitor.topics import build_tagger


def generate(n: int, vocab: list[str], bigrams: list[str], rnd: random.Random) -> list[str]:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=100_000)
    ap.add_argument("--articles", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-rank", type=int, default=1000)
    ap.add_argument("--max-rank", type=int, default=50_000)
    ap.add_argument("--vocab-articles", type=int, default=10_000)
    args = ap.parse_args()
    pin_one_core()
    tagger = build_tagger(load_config("config").topics)
    pool = ant_articles(max(args.articles, args.vocab_articles))
    freq = Counter(t for a in pool[:args.vocab_articles] for t in set(tokens(a.text))
                   if len(t) >= 3 and not t.isdigit())
    vocab = [w for w, _ in freq.most_common(args.max_rank)[args.min_rank:]]
    words = set(vocab)
    bigram_freq = Counter()
    for a in pool[:args.vocab_articles]:
        ts = tokens(a.title)
        bigram_freq.update(f"{x} {y}" for x, y in zip(ts, ts[1:], strict=False) if x in words and y in words)
    bigrams = [b for b, c in bigram_freq.most_common() if c >= 2] or vocab
    # match articles the vocabulary was NOT drawn from, as new articles arrive
    arts = [analyze_article(a, tagger, "ar") for a in pool[-args.articles:]]
    queries = generate(args.subs, vocab, bigrams, random.Random(args.seed))
    with Timer() as t_build:
        matcher = Matcher((str(i), q) for i, q in enumerate(queries))
    with Timer() as t_an:
        docs = [analyzed_doc(a) for a in arts]
    matches = 0
    with Timer() as t_match:
        for d in docs:
            matches += len(matcher.match_doc(d))
    total = t_an.wall + t_match.wall
    emit({"benchmark": "alert-matching", "subscriptions": len(queries), "articles": len(arts),
          "vocabulary_ranks": [args.min_rank, args.max_rank], "example_rules": queries[:5],
          "matches": matches, "matches_per_article": round(matches / len(arts), 2),
          "build_seconds": round(t_build.wall, 2),
          "analyze_seconds": round(t_an.wall, 3), "match_seconds": round(t_match.wall, 3),
          "articles_per_s": round(len(arts) / total), "articles_per_s_match_only": round(len(arts) / t_match.wall),
          "target_articles_per_s": 1000})


if __name__ == "__main__":
    main()
