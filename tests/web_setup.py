"""A data dir filled by a real poll of real articles, and a real uvicorn server over it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from monitor.config import Config, load_config
from raqib.service import run_once
from raqib.web.server import WebServer
from tests.corpus import ant_item, rss, topical_docs
from tests.e2e_setup import write_config
from tests.feedserver import FeedServer
from tests.receivers import free_port

HOOK_SECRET_ENV = "RAQIB_TEST_HOOK_SECRET"
RAQIB = [sys.executable, "-m", "raqib.cli"]


def with_web(config: Config, **web) -> Config:
    """The config with web settings changed (as raqib.yaml would set them)."""
    settings = config.settings.model_copy(update={"web": config.settings.web.model_copy(update=web)})
    return replace(config, settings=settings)


async def fill(tmp: Path, docs, dead_hook: bool = True) -> Path:
    """Serve `docs` as two RSS feeds, poll them once with a subscription whose webhook is down
    (so the outbox holds failed alerts), and return the config dir."""
    os.environ.setdefault(HOOK_SECRET_ENV, "test-secret")
    server = await FeedServer().start()
    try:
        half = len(docs) // 2
        server.set_feed("/a.xml", rss([ant_item(d) for d in docs[:half]]))
        server.set_feed("/b.xml", rss([ant_item(d) for d in docs[half:]]))
        cfg_dir = write_config(
            tmp, [("ant-a", server.url("/a.xml")), ("ant-b", server.url("/b.xml"))],
            channels={"hook": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook",
                               "secret_env": HOOK_SECRET_ENV}},
            subscriptions=[{"id": "kursk-watch", "name": "كورسك", "query": "topic:kursk",
                            "channels": ["hook"], "backfill": True}])
        await run_once(load_config(cfg_dir))
    finally:
        await server.stop()
    return cfg_dir


def filled_copy(master: Path, tmp: Path) -> Path:
    """A private copy of a filled tmp dir (config + data), its data_dir pointing at the copy."""
    shutil.copytree(master / "config", tmp / "config")
    shutil.copytree(master / "data", tmp / "data")
    text = (tmp / "config" / "raqib.yaml").read_text(encoding="utf-8")
    (tmp / "config" / "raqib.yaml").write_text(text.replace(str(master / "data"), str(tmp / "data")),
                                               encoding="utf-8")
    return tmp / "config"


def sample_docs(n: int = 120):
    """Topical ANT articles: Kursk, NATO and Budapest Memorandum coverage from five sources."""
    docs = topical_docs()
    rare = [d for d in docs if "كورسك" in d.title + d.abstract + d.text or "بودابست" in d.title + d.text]
    rest = [d for d in docs if d not in rare]
    return rare + rest[::max(1, len(rest) // (n - len(rare)))][:n - len(rare)]


@asynccontextmanager
async def serving(config: Config, pipeline=None):
    """A real uvicorn server on a free loopback port, and an httpx client for it."""
    config = with_web(config, listen=f"127.0.0.1:{free_port()}")
    server = WebServer(config)
    await server.start(pipeline)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            client.ctx = server.ctx  # type: ignore[attr-defined]
            yield client
    finally:
        await server.stop()


def run_cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*RAQIB, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parent.parent)


async def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)
