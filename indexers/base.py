"""The index contract every backend implements (tantivy embedded; Elasticsearch/OpenSearch).

Rules for implementations:
- `index` is idempotent: the article id is the document id, re-indexing replaces.
- It raises IndexError_ when the backend cannot take the batch; the caller keeps the articles
  flagged as unindexed in the store and retries, so a backend outage loses nothing.
- Queries are strings in Raqib's query language (monitor.query); backends compile the parsed
  tree themselves and never pass user text to a native query-string parser.
- All datetimes are aware UTC.
- `facets(query)` counts the query's matches by topic, source (exact feed id), language and
  publication day (UTC), shaped by `facet_lists` so both backends answer alike.
- `delete(ids)` removes these articles' documents (retention); ids not in the index are no
  error. It returns after the deletion is durable, and raises IndexError_ when it cannot.
- Optional: `async clear()` removes every document; `raqib index reindex` calls it (when the
  backend has it) before it queues the whole store again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from monitor.models import Article, SearchPage


@dataclass(frozen=True)
class TrendBucket:
    bucket: datetime  # start of the hour or day, UTC
    topic: str
    count: int


FACET_KINDS = ("topic", "source", "language", "day")
FACET_SIZE = 50  # values per facet (days: the most recent ones)
FACET_FETCH = 10_000  # values a backend fetches per facet before facet_lists cuts them


Facets = dict[str, list[tuple[str, int]]]


def facet_lists(counts: dict[str, dict[str, int]], size: int = FACET_SIZE) -> Facets:
    """Each facet's values, most frequent first (ties by value), days in date order, the last
    `size` of each; zero counts left out."""
    out: Facets = {}
    for kind in FACET_KINDS:
        items = [(k, n) for k, n in counts.get(kind, {}).items() if n > 0]
        if kind == "day":
            out[kind] = sorted(items)[-size:]
        else:
            out[kind] = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:size]
    return out


class ArticleIndex(Protocol):
    async def index(self, articles: Sequence[Article]) -> None: ...

    async def search(self, query: str, *, limit: int = 20, cursor: str | None = None,
                     sort: Literal["relevance", "date"] = "relevance") -> SearchPage: ...

    async def trends(self, query: str | None = None, *, interval: Literal["hour", "day"] = "day",
                     start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]: ...

    async def facets(self, query: str) -> Facets: ...

    async def count(self) -> int: ...

    async def delete(self, ids: Sequence[str]) -> None: ...

    async def health(self) -> dict:
        """{"status": "green" | "yellow" | "red", …}: measured, never assumed."""
        ...

    async def close(self) -> None: ...
