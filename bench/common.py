"""Shared helpers for the benchmarks: real articles, one-core pinning, JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.models import Article  # noqa: E402
from monitor.parser import article_id  # noqa: E402
from tests.corpus import AntDoc, all_docs  # noqa: E402


def pin_one_core() -> None:
    """Benchmarks that claim 'one core' run pinned to one."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def ant_articles(limit: int | None = None) -> list[Article]:
    now = datetime.now(UTC)
    out = []
    for d in all_docs(limit):
        out.append(doc_to_article(d, now))
    return out


def doc_to_article(d: AntDoc, now: datetime, suffix: str = "") -> Article:
    try:
        from email.utils import parsedate_to_datetime

        pub = parsedate_to_datetime(d.time).astimezone(UTC)
    except (TypeError, ValueError):
        pub = now
    return Article(id=article_id(d.docno + suffix, "", "", ""), feed_url=f"http://bench/{d.source}",
                   source=d.source.lower(), title=d.title, summary=d.abstract, content=d.text,
                   link=d.url + suffix, published=pub, fetched=now, language="ar")


def code_revision() -> dict:
    """The commit measured and any uncommitted files (read-only git calls)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "--no-optional-locks", *a], cwd=root, capture_output=True,
                                  text=True, timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": [ln[3:] for ln in git("status", "--porcelain").splitlines()]}


def emit(result: dict) -> None:
    result.setdefault("command", " ".join([Path(sys.executable).name, *sys.argv]))
    result.setdefault("machine", {"python": platform.python_version(), "cpus": os.cpu_count(),
                                  "platform": platform.platform()})
    result.setdefault("when", datetime.now(UTC).isoformat(timespec="seconds"))
    print(json.dumps(result, ensure_ascii=False, indent=2))


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
