"""(a) Topic tagging throughput on real ANT articles, one core, default topics.

    python bench/tagging.py [--limit N]
"""

from __future__ import annotations

import argparse

from common import Timer, ant_articles, emit, pin_one_core

from monitor.analysis import analyze_article
from monitor.config import load_config
from monitor.topics import build_tagger


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    pin_one_core()
    arts = ant_articles(args.limit)
    tagger = build_tagger(load_config("config").topics)
    chars = sum(len(a.text) for a in arts)
    with Timer() as t_tag:
        tagged = sum(1 for a in arts if tagger.tag(a.text)[0])
    with Timer() as t_full:
        for a in arts:
            analyze_article(a, tagger, "ar")
    emit({"benchmark": "tagging", "articles": len(arts), "mean_chars": chars // max(1, len(arts)),
          "tagged_articles": tagged,
          "tag_only": {"seconds": round(t_tag.wall, 3), "articles_per_s": round(len(arts) / t_tag.wall)},
          "tag_plus_language": {"seconds": round(t_full.wall, 3),
                                "articles_per_s": round(len(arts) / t_full.wall)}})


if __name__ == "__main__":
    main()
