"""Issue 3 benchmarks on a real local OpenSearch node (started by scripts/opensearch.sh).

    python bench/engine.py [--articles 10000] [--subs 10000] [--url http://127.0.0.1:9250]

(1) Bulk indexing: EngineIndex.index (batches of 500, the pipeline's way) against a plain
    `helpers.async_bulk` loop over the same documents into a plain index — same node, same run.
(2) Percolation: 10,000 subscriptions stored as percolator queries, articles percolated in
    batches of 200, against the embedded matcher (alerts.matcher.Matcher) on the same
    articles and rules, one core. Both report articles per second and the ratio.
The node is started (and stopped) by this script unless --url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from common import Timer, ant_articles, emit
from matching import generate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerts.matcher import Matcher  # noqa: E402
from indexers import dsl  # noqa: E402
from indexers.engine import EngineIndex, make_client  # noqa: E402
from monitor.analysis import analyze_article, analyzed_doc  # noqa: E402
from monitor.arabic import tokens  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.topics import build_tagger  # noqa: E402


async def run(args, url: str) -> dict:
    from opensearchpy.helpers import async_bulk

    tagger = build_tagger(load_config(ROOT / "config").topics)
    pool = ant_articles(max(args.articles, 10_000))
    arts = [analyze_article(a, tagger, "ar") for a in pool[:args.articles]]
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    ix = EngineIndex(make_client("opensearch", [url]), prefix=prefix, replicas=0)
    await ix.ensure_setup()
    with Timer() as t_engine:
        for i in range(0, len(arts), 500):
            await ix.index(arts[i:i + 500])
    await ix.refresh()
    client = ix.client
    plain = f"{prefix}-plain"
    await client.indices.create(index=plain, body=dsl.first_index_body(dsl.Names(prefix + "-p")))
    docs = [dsl.article_doc(a) for a in arts]
    with Timer() as t_plain:
        await async_bulk(client, ({"_index": plain, "_id": d["id"], "_source": d} for d in docs),
                         chunk_size=500)
    # percolation
    freq = Counter(t for a in pool for t in set(tokens(a.text)) if len(t) >= 3 and not t.isdigit())
    vocab = [w for w, _ in freq.most_common(50_000)[1000:]]
    words = set(vocab)
    bf: Counter = Counter()
    for a in pool:
        ts = tokens(a.title)
        bf.update(f"{x} {y}" for x, y in zip(ts, ts[1:], strict=False) if x in words and y in words)
    bigrams = [b for b, c in bf.most_common() if c >= 2] or vocab
    queries = generate(args.subs, vocab, bigrams, random.Random(1))
    subs = [(str(i), q) for i, q in enumerate(queries)]
    await ix.put_subscriptions(subs)
    sample = arts[:args.percolate_articles]
    engine_hits = 0
    with Timer() as t_perc:
        for i in range(0, len(sample), 200):
            res = await ix.percolate(sample[i:i + 200])
            engine_hits += sum(len(v) for v in res.values())
    matcher = Matcher(subs)
    with Timer() as t_match:
        local_hits = sum(len(matcher.match_doc(analyzed_doc(a))) for a in sample)
    await client.indices.delete(index=f"{prefix}-*")
    await ix.close()
    n = len(arts)
    return {
        "bulk_indexing": {"articles": n, "engine_index_s": round(t_engine.wall, 2),
                          "engine_articles_per_s": round(n / t_engine.wall),
                          "plain_async_bulk_s": round(t_plain.wall, 2),
                          "plain_articles_per_s": round(n / t_plain.wall),
                          "ratio_engine_over_plain_time": round(t_engine.wall / t_plain.wall, 2),
                          "note": "EngineIndex also looks up which rollover index holds each id "
                                  "and collects per-item failures; plain async_bulk does neither"},
        "percolation": {"subscriptions": len(subs), "articles": len(sample),
                        "percolator_s": round(t_perc.wall, 2),
                        "percolator_articles_per_s": round(len(sample) / t_perc.wall),
                        "embedded_matcher_s": round(t_match.wall, 2),
                        "embedded_articles_per_s": round(len(sample) / t_match.wall),
                        "ratio_embedded_over_percolator_speed": round(t_perc.wall / t_match.wall, 2),
                        "matches_equal": engine_hits == local_hits, "matches": local_hits},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--subs", type=int, default=10_000)
    ap.add_argument("--percolate-articles", type=int, default=1000)
    ap.add_argument("--url")
    args = ap.parse_args()
    script = ROOT / "scripts" / "opensearch.sh"
    url = args.url
    if not url:
        out = subprocess.run(["bash", str(script), "start", "--http-port", "9270"], check=True,
                             capture_output=True, text=True, timeout=600).stdout
        url = [u for u in out.split() if u.startswith("http")][0]
    try:
        result = asyncio.run(run(args, url))
    finally:
        if not args.url:
            subprocess.run(["bash", str(script), "stop"], check=False, timeout=300)
    emit({"benchmark": "engine", "node": "OpenSearch 2.19.6, 1 node, 512 MB heap, loopback", **result})


if __name__ == "__main__":
    main()
