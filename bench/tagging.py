"""(a) Tagging + language as the pipeline runs them, per core, on real ANT articles.

    python bench/tagging.py [--limit N] [--items 50] [--runs 3]

The parse worker's work (raqib.pipeline.parse_and_analyze) on the ANT corpus wrapped as RSS
2.0 feeds of --items items (tests.corpus.rss/ant_item, as bench/poll.py serves them, language
declared `ar` in the channel), pinned to one core, timed stage by stage on the articles the
parser produced (language not yet set, as in the pipeline):
- parse: monitor.parser.parse_feed of every feed body,
- tag: Tagger.tag(article.text), the shipped topics,
- language: detect_language(text, declared) with the feed's declaration, and once more with
  no declaration (the fallback a feed without <language> gets),
- analysis: analyze_text(title, body) (tokens and keys shipped for index and matcher),
and the whole parse_and_analyze for the share of each. Median of --runs per stage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

from common import code_revision, emit, pin_one_core

from monitor.analysis import analyze_text
from monitor.config import load_config
from monitor.language import detect_language
from monitor.parser import parse_feed
from monitor.topics import build_tagger
from raqib.pipeline import parse_and_analyze
from tests.corpus import all_docs, ant_item, rss


def timed(fn, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    pin_one_core()
    load_start = os.getloadavg()
    docs = list(all_docs(args.limit))
    bodies = [rss([ant_item(d) for d in docs[i:i + args.items]], title=f"feed {i}")
              for i in range(0, len(docs), args.items)]
    tagger = build_tagger(load_config("config").topics)
    now = datetime.now(UTC)
    headers = {"content-type": "application/rss+xml"}
    feeds = [parse_feed(b, headers, f"http://bench/{i}", "bench", now) for i, b in enumerate(bodies)]
    arts = [a for f in feeds for a in f.articles]
    n = len(arts)
    texts = [a.text for a in arts]
    declared = feeds[0].language or "ar"
    # warm the caches a long-running worker has warm (forms(), the langid model)
    for t in texts[:200]:
        tagger.tag(t)
        detect_language(t, "")
    stages = {
        "parse": lambda: [parse_feed(b, headers, f"http://bench/{i}", "bench", now)
                          for i, b in enumerate(bodies)],
        "tag": lambda: [tagger.tag(t) for t in texts],
        "language_declared": lambda: [detect_language(t, declared) for t in texts],
        "language_undeclared": lambda: [detect_language(t, "") for t in texts],
        "analysis": lambda: [analyze_text(a.title, a.body) for a in arts],
        "parse_and_analyze": lambda: [parse_and_analyze(b, headers, f"http://bench/{i}", "bench", now,
                                                        declared, tagger) for i, b in enumerate(bodies)],
    }
    cpu = {k: timed(fn, args.runs) for k, fn in stages.items()}
    whole = cpu["parse_and_analyze"]
    tag_lang = cpu["tag"] + cpu["language_declared"]
    emit({"benchmark": "tagging", **code_revision(), "articles": n, "feeds": len(bodies),
          "mean_chars": sum(map(len, texts)) // max(1, n),
          "tagged_articles": sum(1 for t in texts if tagger.tag(t)[0]),
          "languages_detected_undeclared": dict(sorted(
              {c: sum(1 for t in texts if detect_language(t, "") == c) for c in {"ar", "en"}}.items())),
          "cpu_s_median_of_runs": {k: round(v, 3) for k, v in cpu.items()},
          "articles_per_s_one_core": {k: round(n / v) for k, v in cpu.items() if v},
          "tag_plus_language": {"cpu_s": round(tag_lang, 3), "articles_per_s_one_core": round(n / tag_lang),
                                "share_of_parse_and_analyze": round(tag_lang / whole, 3)},
          "tag_plus_language_undeclared": {
              "articles_per_s_one_core": round(n / (cpu["tag"] + cpu["language_undeclared"]))},
          "target": "tagging + language >= 5,000 articles/s per core",
          "runs": args.runs, "load_1_5_15_at_start": [round(x, 2) for x in load_start],
          "load_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
