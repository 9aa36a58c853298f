"""What every request handler reaches: the config, the store, the index, and (in `raqib run`)
the live pipeline. One object, built once per process, handed to the app."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from indexers.base import ArticleIndex
from monitor.config import Config
from monitor.store import Store
from raqib.web.tokens import Verifier

if TYPE_CHECKING:
    from raqib.pipeline import Pipeline


@dataclass
class WebContext:
    config: Config
    store: Store  # the web side's own connection (SQLite WAL: readers never block the poller)
    index: ArticleIndex
    pipeline: Pipeline | None = None  # None under `raqib web`: a read side with no poller
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    verifier: Verifier = field(default_factory=Verifier)
    _tagger: Any = None
    _db_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="raqib-web-store"))

    async def db(self, fn, *args) -> Any:
        """Run a store call on the web side's store thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)

    def tagger(self):
        """The service's tagger, or one built from the topics here (`raqib web`)."""
        if self.pipeline is not None:
            return self.pipeline.tagger
        if self._tagger is None:
            from monitor.topics import build_tagger

            self._tagger = build_tagger(self.config.topics)
        return self._tagger

    def db_sync(self, fn, *args) -> Any:
        """The same, from synchronous code (waits for the store thread)."""
        return self._db_pool.submit(fn, *args).result()

    @property
    def read_only(self) -> bool:
        return self.pipeline is None

    def close(self) -> None:
        self._db_pool.submit(self.store.close).result()
        self._db_pool.shutdown(wait=True)


async def ctx_of(request: Request) -> WebContext:
    """The dependency handlers use to reach the store, index and pipeline (async: FastAPI
    would run a plain function in a worker thread, one thread hop per request)."""
    return request.app.state.ctx
