"""(f) API search over 100,000 articles against the index's own latency.

    python bench/api.py [--dir /tmp/raqib-bench-api] [--from /tmp/raqib-bench-search]
                        [--articles 100000] [--repeat 5] [--limit 20]

The data dir is bench/search.py's (a real store and tantivy index of the ANT archive and its
dated copies), copied from --from when that one is ready, else built the same way. `raqib web`
serves it in its own process on a free loopback port; this process times, for each query of
bench/search.py's fixed mix (each in relevance and date order), interleaved:

- index: TantivyIndex.search_sync(query, limit) on its own instance over the same directory
  (what bench/search.py measures), and
- api: GET /api/v1/search?q=…&limit=…&sort=… over HTTP (httpx, keep-alive) until the JSON
  body is parsed: query checks, the same index search, hit_json, JSON encoding, uvicorn.

One warm-up pass is not counted; then --repeat passes. Reported: p50/p99 of both and their
difference (target: the API within 10 ms of the index at p50 and p99), and, for information,
the API with facets=true (topic, source, language and day counts of every match), and a
GET /healthz round trip after each: the HTTP floor (client, loopback, uvicorn) at that load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from common import code_revision, emit
from search import FIXED, build, db_ready, summary

import httpx
import yaml

from indexers.tantivy_index import TantivyIndex

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 10.0


def prepare(data: Path, source: Path | None, n: int) -> None:
    db = data / "raqib.db"
    if db_ready(db, n):
        return
    if source and db_ready(source / "raqib.db", n):
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(source, data)
        return
    data.mkdir(parents=True, exist_ok=True)
    build(db, n)


def write_config(cfg: Path, data: Path, port: int) -> None:
    """topics.yaml from config/, one feed per stored source (queries name them), web.listen."""
    cfg.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "topics.yaml", cfg / "topics.yaml")
    with sqlite3.connect(data / "raqib.db") as c:
        sources = sorted(r[0] for r in c.execute("SELECT DISTINCT source FROM articles"))
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": [
        {"id": s, "url": f"http://127.0.0.1:9/{s}.xml", "enabled": False} for s in sources]}), encoding="utf-8")
    (cfg / "alerts.yaml").write_text("channels: {}\nsubscriptions: []\n", encoding="utf-8")
    (cfg / "raqib.yaml").write_text(yaml.safe_dump({
        "data_dir": str(data), "log": {"level": "WARNING"},
        "web": {"listen": f"127.0.0.1:{port}"}}), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/raqib-bench-api"))
    ap.add_argument("--from", dest="source", type=Path, default=Path("/tmp/raqib-bench-search"))
    ap.add_argument("--articles", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()

    data = args.dir / "data"
    prepare(data, args.source, args.articles)
    port = free_port()
    write_config(args.dir / "config", data, port)
    server = subprocess.Popen([sys.executable, "-m", "raqib.cli", "web", "--config", str(args.dir / "config")],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    index = TantivyIndex(data / "raqib.db")
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"raqib web did not start: {server.stderr.read() if server.stderr else ''}")
        load = [os.getloadavg()[0]]
        times: dict[str, list[float]] = defaultdict(list)
        mismatches = 0
        for rnd in range(args.repeat + 1):
            for qs in FIXED.values():
                for q in qs:
                    for sort in ("relevance", "date"):
                        t0 = time.perf_counter()
                        page = index.search_sync(q, limit=args.limit, sort=sort)
                        t1 = time.perf_counter()
                        r = client.get("/api/v1/search", params={"q": q, "limit": args.limit, "sort": sort})
                        body = r.json()
                        t2 = time.perf_counter()
                        r2 = client.get("/api/v1/search", params={"q": q, "limit": args.limit, "sort": sort,
                                                                  "facets": "true"})
                        r2.json()
                        t3 = time.perf_counter()
                        client.get("/healthz").json()
                        t4 = time.perf_counter()
                        if r.status_code != 200 or body["total"] != page.total:
                            mismatches += 1
                        if rnd:
                            times["index"].append((t1 - t0) * 1000)
                            times["api"].append((t2 - t1) * 1000)
                            times["api_facets"].append((t3 - t2) * 1000)
                            times["healthz"].append((t4 - t3) * 1000)
        load.append(os.getloadavg()[0])
        client.close()
    finally:
        index.close_sync()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    out = {k: summary(v) for k, v in times.items()}
    gap = {p: round(out["api"][f"{p}_ms"] - out["index"][f"{p}_ms"], 2) for p in ("p50", "p99")}
    emit({"benchmark": "api-search", "articles": args.articles, "limit": args.limit, "repeat": args.repeat,
          "queries": sum(len(v) for v in FIXED.values()) * 2, "load_1min": load, "revision": code_revision(),
          "index": out["index"], "api": out["api"], "api_with_facets": out["api_facets"],
          "healthz_round_trip": out["healthz"],
          "api_minus_index_ms": gap, "target_ms": TARGET_MS,
          "met": all(v <= TARGET_MS for v in gap.values()), "answers_differ": mismatches})


if __name__ == "__main__":
    main()
