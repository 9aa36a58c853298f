"""Engine path (issue 3, issue 9 item 6) on a real local node: bulk indexing and percolation.

    python bench/engine.py [--flavor opensearch|elasticsearch] [--articles 10000] [--runs 3]
                           [--subs 10000] [--percolate-articles 1000] [--url URL]

(1) Bulk indexing, a like-for-like pair per run: `EngineIndex.index` in batches of 500 (the
    pipeline's way) into a fresh Raqib layout, and the client's plain `helpers.async_bulk`
    (chunks of 500) of the same documents into a fresh index created with the *same* settings
    and mappings (the layout's template, adapted to the node's capabilities; the bench checks
    that the two mappings are equal). Both build their documents inside the timed region
    (`dsl.article_doc`, from the articles' shipped analysis), as a caller of async_bulk would.
    One unmeasured warm-up pair first (a fresh JVM is slower for its first ~10k documents), then
    --runs pairs, alternating which goes first; medians of wall time and of client CPU.
(2) Percolation: --subs subscriptions (bench/matching.py's broad generator) stored as
    percolator queries, --percolate-articles articles percolated in batches of 200, against the
    embedded matcher on the same articles and rules, one core. The match *sets* are compared
    article by article (not counts). Skipped when the node has no percolator.
The node is started (and stopped) by this script unless --url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from common import Timer, ant_articles, code_revision, emit
from matching import generate_broad

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerts.matcher import Matcher  # noqa: E402
from indexers import dsl  # noqa: E402
from indexers.engine import EngineIndex, _adapt, make_client  # noqa: E402
from monitor.analysis import analyze_article, analyzed_doc  # noqa: E402
from monitor.arabic import tokens  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.topics import build_tagger  # noqa: E402

BATCH = 500


def _bulk_helper(flavor: str):
    if flavor == "opensearch":
        from opensearchpy.helpers import async_bulk
    else:
        from elasticsearch.helpers import async_bulk
    return async_bulk


async def _mapping(client, index: str) -> dict:
    resp = await client.indices.get_mapping(index=index)
    return next(iter(getattr(resp, "body", resp).values()))["mappings"]


async def bulk_pair(client, flavor: str, arts: list, first: str) -> dict:
    """One EngineIndex run and one plain async_bulk run, each into a fresh index with the
    same mapping; `first` says which runs first. Returns wall and client CPU seconds."""
    ix = EngineIndex(client, prefix=f"bench-{uuid.uuid4().hex[:6]}", flavor=flavor, replicas=0)
    await ix.ensure_setup()
    assert ix.capabilities is not None
    plain = f"{ix.names.prefix}-plain"
    tpl = _adapt(dsl.article_template(ix.names, 1, 0), ix.capabilities)["template"]
    await client.indices.create(index=plain, body={"settings": tpl["settings"],
                                                   "mappings": tpl["mappings"]})
    same = await _mapping(client, plain) == await _mapping(client, ix.names.first_index)
    async_bulk = _bulk_helper(flavor)

    async def engine() -> Timer:
        with Timer() as t:
            for i in range(0, len(arts), BATCH):
                await ix.index(arts[i:i + BATCH])
        return t

    async def helper() -> Timer:
        shaped = ix._shaped  # token arrays on a node without the whitespace tokenizer, as ix does
        with Timer() as t:
            await async_bulk(client, ({"_index": plain, "_id": a.id, "_source": shaped(dsl.article_doc(a))}
                                      for a in arts), chunk_size=BATCH)
        return t

    if first == "engine":
        te, tp = await engine(), await helper()
    else:
        tp, te = await helper(), await engine()
    await client.indices.refresh(index=f"{plain},{ix.names.read_alias}")
    counts = [int(getattr(r, "body", r)["count"]) for r in
              [await client.count(index=plain), await client.count(index=ix.names.read_alias)]]
    await _drop(client, ix, plain)
    return {"first": first, "same_mapping": same, "docs_plain_engine": counts,
            "engine_s": round(te.wall, 2), "engine_client_cpu_s": round(te.cpu, 2),
            "plain_s": round(tp.wall, 2), "plain_client_cpu_s": round(tp.cpu, 2),
            "ratio_engine_over_plain_time": round(te.wall / tp.wall, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


async def _drop(client, ix: EngineIndex, *extra: str) -> None:
    """Delete a layout by name (Elasticsearch refuses wildcard deletes by default)."""
    n = ix.names
    await client.indices.delete(index=",".join([n.first_index, n.percolator, n.deliveries, *extra]),
                                ignore_unavailable=True)
    await client.indices.delete_index_template(name=n.template)


def _med(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


async def percolation(ix: EngineIndex, pool: list, arts: list, n_subs: int) -> dict:
    freq = Counter(t for a in pool for t in set(tokens(a.text)) if len(t) >= 3 and not t.isdigit())
    vocab = [w for w, _ in freq.most_common(50_000)[1000:]]
    words = set(vocab)
    bf: Counter = Counter()
    for a in pool:
        ts = tokens(a.title)
        bf.update(f"{x} {y}" for x, y in zip(ts, ts[1:], strict=False) if x in words and y in words)
    bigrams = [b for b, c in bf.most_common() if c >= 2] or vocab
    subs = [(str(i), q) for i, q in enumerate(generate_broad(n_subs, vocab, bigrams, random.Random(1)))]
    await ix.put_subscriptions(subs)
    engine: dict[str, list[str]] = {}
    with Timer() as t_perc:
        for i in range(0, len(arts), 200):
            engine.update(await ix.percolate(arts[i:i + 200]))
    matcher = Matcher(subs)
    with Timer() as t_match:
        local = {a.id: sorted(matcher.match_doc(analyzed_doc(a))) for a in arts}
    differ = [aid for aid in local if local[aid] != engine.get(aid, [])]
    return {"subscriptions": len(subs), "articles": len(arts),
            "percolator_s": round(t_perc.wall, 2),
            "percolator_articles_per_s": round(len(arts) / t_perc.wall),
            "embedded_matcher_s": round(t_match.wall, 2),
            "embedded_articles_per_s": round(len(arts) / t_match.wall),
            "ratio_embedded_over_percolator_speed": round(t_perc.wall / t_match.wall, 2),
            "match_sets_equal": not differ, "articles_whose_sets_differ": differ[:20],
            "matches": sum(len(v) for v in local.values()),
            "articles_with_a_match": sum(1 for v in local.values() if v)}


async def run(args, url: str) -> dict:
    tagger = build_tagger(load_config(ROOT / "config").topics)
    pool = ant_articles(max(args.articles, 10_000))
    arts = [analyze_article(a, tagger, "ar") for a in pool[:args.articles]]
    client = make_client(args.flavor, [url], request_timeout=120)
    out: dict = {"load_1min_at_start": round(os.getloadavg()[0], 2)}
    try:
        warm = await bulk_pair(client, args.flavor, arts, "engine")
        runs = [await bulk_pair(client, args.flavor, arts, "plain" if i % 2 == 0 else "engine")
                for i in range(args.runs)]
        n = len(arts)
        out["bulk_indexing"] = {
            "articles": n, "batch": BATCH, "warm_up_run_not_counted": warm, "runs": runs,
            "median_engine_s": _med(runs, "engine_s"),
            "median_engine_articles_per_s": round(n / _med(runs, "engine_s")),
            "median_plain_s": _med(runs, "plain_s"),
            "median_plain_articles_per_s": round(n / _med(runs, "plain_s")),
            "median_ratio_engine_over_plain_time": _med(runs, "ratio_engine_over_plain_time"),
            "median_engine_client_cpu_s": _med(runs, "engine_client_cpu_s"),
            "median_plain_client_cpu_s": _med(runs, "plain_client_cpu_s")}
        ix = EngineIndex(client, prefix=f"bench-{uuid.uuid4().hex[:6]}", flavor=args.flavor, replicas=0)
        await ix.ensure_setup()
        try:
            if ix.supports_percolation and args.subs:
                out["percolation"] = await percolation(ix, pool, arts[:args.percolate_articles], args.subs)
            else:
                out["percolation"] = "skipped: the node has no percolator" if args.subs else "skipped"
        finally:
            await _drop(client, ix)
    finally:
        await client.close()
    out["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flavor", choices=["opensearch", "elasticsearch"], default="opensearch")
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--subs", type=int, default=10_000)
    ap.add_argument("--percolate-articles", type=int, default=1000)
    ap.add_argument("--url")
    args = ap.parse_args()
    script = ROOT / "scripts" / ("opensearch.sh" if args.flavor == "opensearch" else "elasticsearch.sh")
    url = args.url
    if not url:
        out = subprocess.run(["bash", str(script), "start"], check=True,
                             capture_output=True, text=True, timeout=600).stdout
        url = [u for u in out.split() if u.startswith("http")][0]
    try:
        t0 = time.perf_counter()
        result = asyncio.run(run(args, url))
        result["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.url:
            subprocess.run(["bash", str(script), "stop"], check=False, timeout=300)
    emit({"benchmark": "engine", "flavor": args.flavor, "url": url, **code_revision(), **result})


if __name__ == "__main__":
    main()
