"""The cluster index: Elasticsearch or OpenSearch, through their official async clients.

Layout (indexers.dsl): an index template `<prefix>-articles` for time-based indices
`<prefix>-articles-000001, -000002, …`; the write alias `<prefix>-articles-write` points at
the newest (rollover moves it), the read alias `<prefix>-articles` covers all of them. Alert
subscriptions live as percolator queries in `<prefix>-subscriptions`.

Every query is parsed by monitor.query and translated by indexers.dsl (never handed to a
query-string parser), so the cluster finds the articles the embedded index and the alert
matcher find (see the dsl module for why that holds).

Failures: any transport or API error becomes monitor.errors.IndexError_; a bulk whose items
did not all succeed raises BulkIndexError (an IndexError_) naming the failed ids after the
others were written. The caller keeps the whole batch queued and retries it: indexing is
idempotent, since the article id is the document id and a re-indexed article is written to
the index that already holds it (rolled-over indices included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from indexers import dsl
from indexers.base import TrendBucket
from monitor.errors import ConfigError, IndexError_, QueryError
from monitor.highlight import highlight, snippet
from monitor.models import Article, SearchHit, SearchPage
from monitor.query import parse, positive_keys

log = logging.getLogger(__name__)

Flavor = Literal["opensearch", "elasticsearch"]
FLAVORS = ("opensearch", "elasticsearch")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,100}$")


def _client_error_types() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, asyncio.TimeoutError]
    try:
        import opensearchpy.exceptions as oe
        errs += [oe.OpenSearchException, oe.ImproperlyConfigured]
    except ImportError:  # pragma: no cover - optional dependency
        pass
    try:
        import elastic_transport
        errs += [elastic_transport.TransportError, elastic_transport.ApiError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import aiohttp
        errs.append(aiohttp.ClientError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


CLIENT_ERRORS = _client_error_types()


class BulkIndexError(IndexError_):
    """Some articles of a batch were not indexed; `failed` maps their ids to the reason,
    `indexed` lists the ids that were (informational: the batch is retried as a whole)."""

    def __init__(self, failed: Mapping[str, str], indexed: Sequence[str]):
        self.failed = dict(failed)
        self.indexed = list(indexed)
        ids = list(self.failed)
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        reasons: dict[str, int] = {}
        for r in self.failed.values():
            reasons[r] = reasons.get(r, 0) + 1
        why = "; ".join(f"{r}" + (f" (x{n})" if n > 1 else "")
                        for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:3])
        super().__init__(f"{len(ids)} of {len(ids) + len(self.indexed)} article(s) not indexed: "
                         f"{shown} — {why}")


def _status(e: BaseException) -> int | None:
    meta = getattr(e, "meta", None)
    status = getattr(meta, "status", None)
    if isinstance(status, int):
        return status
    status = getattr(e, "status_code", None)
    return status if isinstance(status, int) else None


def _error_type(e: BaseException) -> str | None:
    for attr in ("body", "info"):
        body = getattr(e, attr, None)
        if isinstance(body, Mapping):
            err = body.get("error")
            if isinstance(err, Mapping):
                return err.get("type")
            if isinstance(err, str):
                return err
    err = getattr(e, "error", None)
    return err if isinstance(err, str) else None


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 400 else text[:400] + "…"


def _body(resp: Any) -> Any:
    """The JSON body of a response of either client (the ES client wraps it)."""
    return getattr(resp, "body", resp)


def _item_error(info: Mapping[str, Any]) -> str:
    err = info.get("error")
    if isinstance(err, Mapping):
        reason = err.get("reason") or ""
        cause = err.get("caused_by") or {}
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason = f"{reason}: {cause['reason']}"
        return f"{info.get('status')} {err.get('type')}: {reason}"[:300]
    return f"{info.get('status')} {err}"[:300]


def make_client(flavor: Flavor, urls: Sequence[str], verify_certs: bool = True,
                ca_certs: str | None = None, env: Mapping[str, str] | None = None,
                request_timeout: float = 30.0, max_retries: int = 3):
    """An AsyncOpenSearch or AsyncElasticsearch client for `urls`.

    Credentials come only from the environment: RAQIB_INDEX_API_KEY, or
    RAQIB_INDEX_USERNAME + RAQIB_INDEX_PASSWORD. (OpenSearch has no API keys of its own; the
    key is sent as an `Authorization: ApiKey …` header for proxies that accept one.)"""
    env = os.environ if env is None else env
    if flavor not in FLAVORS:
        raise ConfigError(f"index backend {flavor!r}: expected one of {', '.join(FLAVORS)}")
    if not urls:
        raise ConfigError(f"index backend {flavor}: no urls configured")
    api_key = env.get("RAQIB_INDEX_API_KEY") or None
    user = env.get("RAQIB_INDEX_USERNAME") or None
    password = env.get("RAQIB_INDEX_PASSWORD") or None
    if bool(user) != bool(password):
        raise ConfigError("RAQIB_INDEX_USERNAME and RAQIB_INDEX_PASSWORD must be set together")
    if api_key and user:
        raise ConfigError("set either RAQIB_INDEX_API_KEY or RAQIB_INDEX_USERNAME/PASSWORD, not both")
    tls = any(u.lower().startswith("https://") for u in urls)
    if flavor == "opensearch":
        from opensearchpy import AsyncOpenSearch

        kw: dict[str, Any] = {"hosts": list(urls), "timeout": request_timeout,
                              "max_retries": max_retries, "retry_on_timeout": True}
        if user:
            kw["http_auth"] = (user, password)
        if api_key:
            kw["headers"] = {"Authorization": f"ApiKey {api_key}"}
        if tls:
            kw["verify_certs"] = verify_certs
            kw["ssl_show_warn"] = verify_certs
            if ca_certs:
                kw["ca_certs"] = ca_certs
        return AsyncOpenSearch(**kw)
    from elasticsearch import AsyncElasticsearch

    kw = {"hosts": list(urls), "request_timeout": request_timeout, "max_retries": max_retries,
          "retry_on_timeout": True}
    if user:
        kw["basic_auth"] = (user, password)
    if api_key:
        kw["api_key"] = api_key
    if tls:
        kw["verify_certs"] = verify_certs
        if ca_certs:
            kw["ca_certs"] = ca_certs
    return AsyncElasticsearch(**kw)


def _identity(action):
    return action


class EngineIndex:
    """ArticleIndex over Elasticsearch/OpenSearch (see indexers.base for the contract)."""

    def __init__(self, client, prefix: str = "raqib", flavor: Flavor = "opensearch", *,
                 shards: int = 1, replicas: int = 1, refresh: bool | str = False,
                 chunk_size: int = 500, max_retries: int = 3, initial_backoff: float = 0.5,
                 max_backoff: float = 30.0, bulk_timeout: str = "30s",
                 percolate_page: int = 5000):
        if flavor not in FLAVORS:
            raise ConfigError(f"index flavor {flavor!r}: expected one of {', '.join(FLAVORS)}")
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(f"index prefix {prefix!r}: use lower-case letters, digits, '-', '_', '.'")
        self.client = client
        self.flavor = flavor
        self.names = dsl.Names(prefix)
        self.shards, self.replicas = shards, replicas
        self.refresh_mode = refresh
        self.chunk_size = chunk_size
        self.max_retries, self.initial_backoff, self.max_backoff = max_retries, initial_backoff, max_backoff
        self.bulk_timeout = bulk_timeout
        self.percolate_page = min(percolate_page, dsl.MAX_PAGE)
        self._ready = False
        self._setup_lock = asyncio.Lock()
        if flavor == "opensearch":
            from opensearchpy.helpers import async_streaming_bulk
        else:
            from elasticsearch.helpers import async_streaming_bulk
        self._streaming_bulk = async_streaming_bulk

    # ---- plumbing ----

    async def _api(self, what: str, coro):
        """Await a client call; every client failure becomes IndexError_."""
        try:
            return _body(await coro)
        except CLIENT_ERRORS as e:
            raise IndexError_(f"{self.flavor}: {what} failed: {_describe(e)}") from e

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.ensure_setup()

    # ---- setup ----

    async def ensure_setup(self) -> None:
        """Template, first article index with both aliases, percolator index. Idempotent and
        safe to run concurrently (from several workers or processes)."""
        async with self._setup_lock:
            n = self.names
            ix = self.client.indices
            await self._api("put index template", ix.put_index_template(
                name=n.template, body=dsl.article_template(n, self.shards, self.replicas)))
            if not await self._api("alias check", ix.exists_alias(name=n.write_alias)):
                try:
                    await ix.create(index=n.first_index, body=dsl.first_index_body(n))
                except CLIENT_ERRORS as e:
                    if _error_type(e) != "resource_already_exists_exception":
                        raise IndexError_(f"{self.flavor}: creating {n.first_index} failed: "
                                          f"{_describe(e)}") from e
            else:
                # new fields of a newer Raqib reach the existing indices too
                await self._api("update article mappings", ix.put_mapping(
                    index=n.read_alias, body=dsl.article_mappings()))
            try:
                await ix.create(index=n.percolator,
                                body=dsl.percolator_index_body(1, self.replicas))
            except CLIENT_ERRORS as e:
                if _error_type(e) != "resource_already_exists_exception":
                    raise IndexError_(f"{self.flavor}: creating {n.percolator} failed: "
                                      f"{_describe(e)}") from e
                await self._api("update percolator mappings", ix.put_mapping(
                    index=n.percolator, body=dsl.percolator_mappings()))
            self._ready = True

    async def rollover(self, conditions: Mapping[str, Any] | None = None) -> dict:
        """Roll the write alias over to a new index when a condition is met (all when none
        are given), e.g. dsl.rollover_conditions(max_docs=5_000_000, max_age="30d")."""
        await self._ensure_ready()
        try:
            resp = _body(await self.client.indices.rollover(
                alias=self.names.write_alias, body=dsl.rollover_body(conditions)))
        except CLIENT_ERRORS as e:
            if _error_type(e) == "resource_already_exists_exception":  # another worker won
                return {"rolled_over": False, "reason": "concurrent rollover"}
            raise IndexError_(f"{self.flavor}: rollover failed: {_describe(e)}") from e
        return {"rolled_over": bool(resp.get("rolled_over")), "old_index": resp.get("old_index"),
                "new_index": resp.get("new_index"), "conditions": resp.get("conditions", {})}

    async def health(self) -> dict:
        await self._ensure_ready()
        n = self.names
        h = await self._api("cluster health", self.client.cluster.health())
        stats = await self._api("index stats", self.client.indices.stats(
            index=n.pattern, metric="docs"))
        aliases = await self._aliases()
        subs = await self._api("count subscriptions", self.client.count(index=n.percolator))
        indices = {name: v.get("primaries", {}).get("docs", {}).get("count", 0)
                   for name, v in sorted(stats.get("indices", {}).items())}
        return {
            "flavor": self.flavor,
            "cluster": h.get("cluster_name"),
            "status": h.get("status"),
            "nodes": h.get("number_of_nodes"),
            "active_shards": h.get("active_shards"),
            "unassigned_shards": h.get("unassigned_shards"),
            "indices": indices,
            "write_index": self._write_index(aliases),
            "articles": await self.count(),
            "subscriptions": subs.get("count", 0),
        }

    async def refresh(self) -> None:
        """Make everything written so far searchable (tests; the engine does it every second)."""
        await self._ensure_ready()
        n = self.names
        await self._api("refresh", self.client.indices.refresh(index=f"{n.read_alias},{n.percolator}"))

    # ---- writing ----

    async def _aliases(self) -> dict:
        n = self.names
        return await self._api("read aliases", self.client.indices.get_alias(
            name=f"{n.read_alias},{n.write_alias}"))

    def _write_index(self, aliases: Mapping[str, Any]) -> str:
        w = self.names.write_alias
        holders = {i: v.get("aliases", {}).get(w) for i, v in aliases.items()
                   if w in v.get("aliases", {})}
        if len(holders) == 1:
            return next(iter(holders))
        flagged = [i for i, a in holders.items() if (a or {}).get("is_write_index")]
        if len(flagged) != 1:
            raise IndexError_(f"{self.flavor}: write alias {w} resolves to {sorted(holders) or 'nothing'}"
                              " (run ensure_setup)")
        return flagged[0]

    async def _targets(self, ids: Sequence[str]) -> dict[str, str]:
        """The concrete index each id must be written to: the one already holding it, else
        the current write index. Concrete names (not the alias) so that a rollover between
        this lookup and the bulk cannot split an article across two indices."""
        try:
            aliases = await self._aliases()
            write = self._write_index(aliases)
        except IndexError_:
            self._ready = False  # indices gone? set them up again on the next call
            raise
        targets = dict.fromkeys(ids, write)
        older = sorted(i for i in aliases if i != write)
        if older:
            docs = [{"_index": i, "_id": d, "_source": False} for i in older for d in ids]
            found = await self._api("locate articles", self.client.mget(body={"docs": docs}))
            for d in found.get("docs", []):
                if d.get("found"):
                    targets[d["_id"]] = d["_index"]
        return targets

    def document(self, article: Article) -> dict:
        """The stored document for an article (a method so tests can break one on purpose)."""
        return dsl.article_doc(article)

    async def _bulk(self, actions: list[tuple[dict, dict | None]], ids: Sequence[str],
                    ignore_missing_deletes: bool = False, refresh: bool | str = False) -> None:
        ok_ids: list[str] = []
        failed: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        if self.flavor == "elasticsearch":
            # (opensearch-py takes `timeout` as its own client-side request timeout)
            kwargs["timeout"] = self.bulk_timeout
        if refresh:
            kwargs["refresh"] = "true" if refresh is True else refresh
        try:
            async for ok, item in self._streaming_bulk(
                    self.client, actions, chunk_size=self.chunk_size, raise_on_error=False,
                    raise_on_exception=False, max_retries=self.max_retries,
                    initial_backoff=self.initial_backoff, max_backoff=self.max_backoff,
                    expand_action_callback=_identity, **kwargs):
                op, info = next(iter(item.items()))
                doc_id = str(info.get("_id"))
                if ok or (ignore_missing_deletes and op == "delete" and info.get("status") == 404):
                    ok_ids.append(doc_id)
                else:
                    failed[doc_id] = _item_error(info)
        except CLIENT_ERRORS as e:
            reason = _describe(e)
            for d in ids:
                if d not in failed and d not in ok_ids:
                    failed[d] = reason
        done = set(ok_ids) | set(failed)
        for d in ids:
            if d not in done:
                failed[d] = "no answer from the bulk request"
        if failed:
            raise BulkIndexError(failed, ok_ids)

    async def index(self, articles: Sequence[Article]) -> None:
        if not articles:
            return
        by_id: dict[str, Article] = {}
        for a in articles:
            by_id[a.id] = a  # the last version of an article in the batch wins
        docs: dict[str, dict] = {}
        unserializable: dict[str, str] = {}
        for aid, a in by_id.items():
            doc = self.document(a)
            try:
                json.dumps(doc, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError, UnicodeError) as e:
                unserializable[aid] = f"cannot serialize: {e}"
                continue
            docs[aid] = doc
        try:
            if docs:
                await self._ensure_ready()
                targets = await self._targets(list(docs))
                await self._bulk([({"index": {"_index": targets[aid], "_id": aid}}, doc)
                                  for aid, doc in docs.items()], list(docs),
                                 refresh=self.refresh_mode)
        except BulkIndexError as e:
            raise BulkIndexError({**unserializable, **e.failed}, e.indexed) from None
        except IndexError_ as e:  # nothing was sent: the whole batch failed
            raise BulkIndexError({**unserializable, **dict.fromkeys(docs, str(e))}, []) from e
        if unserializable:
            raise BulkIndexError(unserializable, list(docs))

    # ---- reading ----

    async def _search(self, index: str, body: dict, what: str = "search") -> dict:
        try:
            return _body(await self.client.search(index=index, body=body))
        except CLIENT_ERRORS as e:
            if _status(e) == 400:
                raise QueryError(f"{what} rejected by {self.flavor}: {_describe(e)}") from e
            raise IndexError_(f"{self.flavor}: {what} failed: {_describe(e)}") from e

    async def search(self, query: str, *, limit: int = 20, cursor: str | None = None,
                     sort: Literal["relevance", "date"] = "relevance") -> SearchPage:
        node = parse(query)
        dsl.sort_spec(sort, True)  # validates `sort`
        after, seen = dsl.decode_cursor(cursor, sort) if cursor else (None, 0)
        await self._ensure_ready()
        keys = positive_keys(node)
        raw_hits: list[dict] = []
        total = 0
        remaining = max(0, limit)
        while True:
            size = min(remaining, dsl.MAX_PAGE)
            resp = await self._search(self.names.read_alias, dsl.search_body(
                node, size=size, sort=sort, search_after=after))
            total = resp["hits"]["total"]["value"]
            page = resp["hits"]["hits"]
            raw_hits += page
            remaining -= len(page)
            if page:
                after = page[-1]["sort"]
            if remaining <= 0 or len(page) < size:
                break
        hits = []
        for h in raw_hits:
            art = dsl.article_from_source(h["_source"])
            hits.append(SearchHit(article=art, score=float(h.get("_score") or 0.0),
                                  highlights={"title": highlight(art.title, keys)},
                                  snippet=snippet(art.body, keys)))
        shown = seen + len(hits)
        nxt = dsl.encode_cursor(sort, after, shown) if hits and shown < total else None
        return SearchPage(total=total, hits=tuple(hits), next_cursor=nxt)

    async def trends(self, query: str | None = None, *, interval: Literal["hour", "day"] = "day",
                     start: datetime | None = None, end: datetime | None = None) -> list[TrendBucket]:
        node = parse(query) if query else None
        await self._ensure_ready()
        out: list[TrendBucket] = []
        after = None
        while True:
            resp = await self._search(self.names.read_alias,
                                      dsl.trends_body(node, interval, start, end, after), "trends")
            agg = resp["aggregations"]["trends"]
            for b in agg["buckets"]:
                when = datetime.fromtimestamp(b["key"]["bucket"] / 1000, UTC)
                out.append(TrendBucket(when, b["key"]["topic"], b["doc_count"]))
            after = agg.get("after_key")
            if not agg["buckets"] or after is None:
                break
        out.sort(key=lambda t: (t.bucket, t.topic))
        return out

    async def count(self) -> int:
        await self._ensure_ready()
        resp = await self._api("count", self.client.count(index=self.names.read_alias))
        return int(resp["count"])

    # ---- subscriptions (percolator) ----

    async def _subscription_ids(self) -> set[str]:
        out: set[str] = set()
        after = None
        while True:
            body: dict[str, Any] = {"query": {"match_all": {}}, "sort": [{"sub_id": "asc"}],
                                    "size": 1000, "_source": False, "track_total_hits": False}
            if after:
                body["search_after"] = after
            resp = await self._search(self.names.percolator, body, "list subscriptions")
            hits = resp["hits"]["hits"]
            out.update(h["_id"] for h in hits)
            if len(hits) < 1000:
                return out
            after = hits[-1]["sort"]

    async def put_subscriptions(self, subscriptions: Sequence[tuple[str, str]]) -> None:
        """Store exactly these (id, query) pairs as percolator queries; others are deleted.
        Every query is parsed first: a QueryError leaves the stored set untouched."""
        wanted: dict[str, tuple[str, Any]] = {}
        for sid, q in subscriptions:
            wanted[str(sid)] = (q, parse(q))
        await self._ensure_ready()
        index = self.names.percolator
        stale = await self._subscription_ids() - set(wanted)
        actions: list[tuple[dict, dict | None]] = [
            ({"index": {"_index": index, "_id": sid}}, dsl.subscription_doc(sid, q, node))
            for sid, (q, node) in wanted.items()]
        actions += [({"delete": {"_index": index, "_id": sid}}, None) for sid in sorted(stale)]
        if actions:
            await self._bulk(actions, [*wanted, *sorted(stale)], ignore_missing_deletes=True)
        await self._api("refresh subscriptions", self.client.indices.refresh(index=index))

    async def percolate(self, articles: Sequence[Article],
                        now: datetime | None = None) -> dict[str, list[str]]:
        """{article id: ids of the stored subscriptions it matches}, one percolate request for
        the whole batch (more only when over `percolate_page` subscriptions match). A hit of a
        subscription with a relative date (stored relaxed) is re-checked at `now` (the clock)."""
        out: dict[str, set[str]] = {a.id: set() for a in articles}
        if not articles:
            return {}
        now = now or datetime.now(UTC)
        recheck = _Recheck(articles, now)
        await self._ensure_ready()
        docs = [dsl.match_doc(a) for a in articles]
        after = None
        while True:
            resp = await self._search(self.names.percolator, dsl.percolate_body(
                docs, size=self.percolate_page, search_after=after), "percolate")
            hits = resp["hits"]["hits"]
            for h in hits:
                try:
                    found = dsl.slots(h, len(docs))
                except ValueError as e:
                    raise IndexError_(f"{self.flavor}: percolate: {e}") from e
                node = dsl.needs_recheck((h.get("_source") or {}).get("raqib_query", ""))
                for s in found:
                    if node is None or recheck(node, s):
                        out[articles[s].id].add(h["_id"])
            if len(hits) < self.percolate_page:
                break
            after = hits[-1]["sort"]
        return {aid: sorted(subs) for aid, subs in out.items()}

    async def claim_deliveries(self, delivery_ids: Sequence[str], owner: str) -> set[str]:
        """The delivery ids this worker (`owner`) may send: created here now, or created by the
        same owner before (a restart after a crash). Ids another worker claimed are left out."""
        if not delivery_ids:
            return set()
        await self._ensure_ready()
        index = self.names.deliveries
        actions = [({"create": {"_index": index, "_id": d}}, {"owner": owner}) for d in delivery_ids]
        claimed: set[str] = set()
        conflicts: list[str] = []
        try:
            async for ok, item in self._streaming_bulk(
                    self.client, actions, chunk_size=self.chunk_size, raise_on_error=False,
                    raise_on_exception=False, max_retries=self.max_retries,
                    initial_backoff=self.initial_backoff, max_backoff=self.max_backoff,
                    expand_action_callback=_identity, refresh="wait_for"):
                info = next(iter(item.values()))
                if ok:
                    claimed.add(str(info["_id"]))
                elif info.get("status") == 409:
                    conflicts.append(str(info["_id"]))
                else:
                    raise IndexError_(f"{self.flavor}: claiming alerts failed: {_item_error(info)}")
        except CLIENT_ERRORS as e:
            raise IndexError_(f"{self.flavor}: claiming alerts failed: {_describe(e)}") from e
        if conflicts:
            resp = await self._api("read alert claims", self.client.mget(
                index=index, body={"ids": conflicts}))
            claimed |= {d["_id"] for d in resp["docs"] if d.get("found") and d["_source"].get("owner") == owner}
        return claimed

    async def close(self) -> None:
        try:
            await self.client.close()
            # opensearch-py closes only the connections it currently deems alive; a node that
            # went down keeps an open aiohttp session otherwise
            pool = getattr(getattr(self.client, "transport", None), "connection_pool", None)
            for conn in getattr(pool, "orig_connections", ()):
                close = getattr(conn, "close", None)
                if close is not None:
                    res = close()
                    if asyncio.iscoroutine(res):
                        await res
        except CLIENT_ERRORS as e:  # pragma: no cover - closing a broken connection
            log.debug("closing the index client: %s", e)


class _Recheck:
    """evaluate() of relaxed percolator hits at one `now`, each article analyzed at most once."""

    def __init__(self, articles: Sequence[Article], now: datetime):
        self.articles, self.now = articles, now
        self.docs: dict[int, Any] = {}

    def __call__(self, node: Any, slot: int) -> bool:
        from monitor.analysis import analyzed_doc
        from monitor.query import evaluate

        if slot not in self.docs:
            self.docs[slot] = analyzed_doc(self.articles[slot])
        return evaluate(node, self.docs[slot], self.now)
