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

Capabilities, not version guesses: on setup the cluster is probed (version, percolator,
`arabic`/`english` analyzers, the whitespace tokenizer, `_delete_by_query`) and Raqib
degrades cleanly where a module is missing (Elastic's integ-test builds, used by the tests,
lack them all): the token fields use the built-in `keyword` analyzer over token arrays
(same tokens, same positions, same BM25), the human fields the `standard` analyzer, alerts
the embedded matcher instead of the percolator, and old delivery claims are deleted by
search + bulk instead of `_delete_by_query`. `health()["server"]` says which.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import copy
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from indexers import dsl
from indexers.base import FACET_FETCH, Facets, TrendBucket, facet_lists
from monitor.errors import ConfigError, IndexError_, QueryError
from monitor.highlight import make_hit, wanted
from monitor.models import Article, SearchHit, SearchPage
from monitor.query import parse

log = logging.getLogger(__name__)

Flavor = Literal["opensearch", "elasticsearch"]
FLAVORS = ("opensearch", "elasticsearch")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,100}$")

# What `raqib index status` reports as supported, and what the engine suite runs against
# (scripts/opensearch.sh, scripts/elasticsearch.sh) in every CI run.
SUPPORTED_SERVERS = {
    "elasticsearch": {"supported": "8.19 and 9.x (client elasticsearch 8.19, raqib[elasticsearch])",
                      "tested": ["8.19.21", "9.5.3"]},
    "opensearch": {"supported": "2.x (client opensearch-py, raqib[opensearch])",
                   "tested": ["2.19.6"]},
}
CLAIM_RETENTION_S = 30 * 86_400  # delivery claims older than this are deleted
CLAIM_PURGE_EVERY_S = 3_600


@dataclass(frozen=True)
class Capabilities:
    """What the cluster can do, probed (never guessed from the version)."""

    flavor: str
    version: str | None
    percolator: bool
    arabic_analyzer: bool
    english_analyzer: bool
    whitespace_tokenizer: bool
    delete_by_query: bool

    def missing(self) -> list[str]:
        names = ["percolator", "arabic_analyzer", "english_analyzer", "whitespace_tokenizer",
                 "delete_by_query"]
        return [n for n in names if not getattr(self, n)]


FULL = dict(percolator=True, arabic_analyzer=True, english_analyzer=True,
            whitespace_tokenizer=True, delete_by_query=True)


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
    _require_client(flavor)
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


def _require_client(flavor: str) -> None:
    """One clear line when the cluster client is not installed (it is an extra)."""
    module = "opensearchpy" if flavor == "opensearch" else "elasticsearch"
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"index backend {flavor}: its client is not installed; "
                          f"pip install 'raqib[{flavor}]'") from None


def _token_list(text: str) -> list[str]:
    """Raqib's space-joined tokens as the whitespace tokenizer (max_token_length
    dsl.MAX_TOKEN_CHARS) would cut them: for nodes without that tokenizer."""
    out: list[str] = []
    n = dsl.MAX_TOKEN_CHARS
    for t in text.split(" "):
        out += [t[i:i + n] for i in range(0, len(t), n)]
    return out


def _adapt(body: dict, caps: Capabilities) -> dict:
    """An index body, template or mapping from indexers.dsl, rewritten for what the cluster
    lacks. Without the whitespace tokenizer the token fields use the built-in `keyword`
    analyzer on arrays of tokens (position_increment_gap 0: consecutive positions, so
    phrases, span queries and BM25 see exactly the whitespace tokens); without the Arabic
    filters the human fields use `standard`; without `english` there is no `.en` subfield."""
    body = copy.deepcopy(body)

    def walk(node):
        if isinstance(node, dict):
            analysis = node.get("analysis")
            if isinstance(analysis, dict):
                analyzers = analysis.get("analyzer", {})
                if not caps.whitespace_tokenizer:
                    analysis.pop("tokenizer", None)
                    analyzers.pop("raqib_tokens", None)
                if not caps.arabic_analyzer:
                    analyzers.pop("raqib_arabic", None)
                if not analyzers:
                    node.pop("analysis")
            if node.get("analyzer") == "raqib_tokens" and not caps.whitespace_tokenizer:
                node["analyzer"] = "keyword"
                node["position_increment_gap"] = 0
            if node.get("analyzer") == "raqib_arabic" and not caps.arabic_analyzer:
                node["analyzer"] = "standard"
            fields = node.get("fields")
            if isinstance(fields, dict) and not caps.english_analyzer:
                fields.pop("en", None)
                if not fields:
                    node.pop("fields")
            for v in list(node.values()):
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(body)
    return body


def _identity(action):
    return action


class EngineIndex:
    """ArticleIndex over Elasticsearch/OpenSearch (see indexers.base for the contract)."""

    def __init__(self, client, prefix: str = "raqib", flavor: Flavor = "opensearch", *,
                 shards: int = 1, replicas: int = 1, refresh: bool | str = False,
                 chunk_size: int = 500, max_retries: int = 3, initial_backoff: float = 0.5,
                 max_backoff: float = 30.0, bulk_timeout: str = "30s",
                 percolate_page: int = 5000, claim_retention_s: float = CLAIM_RETENTION_S):
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
        self.claim_retention_s = claim_retention_s
        self._ready = False
        self._setup_lock = asyncio.Lock()
        self.capabilities: Capabilities | None = None  # probed by ensure_setup
        self._stored: dict[str, str] = {}  # subscriptions this instance stored: {id: query}
        self._local_subs: dict[str, str] = {}  # without a percolator: matched here
        self._local_matcher: tuple[int, Any] | None = None
        self._local_version = 0
        self._last_purge = 0.0
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

    @property
    def supports_percolation(self) -> bool | None:
        """Whether alerts are matched by the cluster's percolator (None before the first
        call has probed the cluster). Without one, percolate() matches the subscriptions
        this instance stored with the embedded matcher, and the pipeline needs no change."""
        return None if self.capabilities is None else self.capabilities.percolator

    # ---- setup ----

    async def _analyzes(self, body: dict) -> bool:
        try:
            await self.client.indices.analyze(body=body)
            return True
        except CLIENT_ERRORS as e:
            if _status(e) == 400:  # "failed to find analyzer/tokenizer"
                return False
            if _status(e) in (401, 403):  # a restricted API key: assume a full distribution
                return True
            raise IndexError_(f"{self.flavor}: probing analyzers failed: {_describe(e)}") from e

    async def probe(self) -> Capabilities:
        """What the cluster can do: version and modules from _nodes (every node must have a
        module), analyzers by asking _analyze. A cluster that does not let us list its
        nodes (a restricted API key) is taken to have the modules every production
        distribution ships."""
        found: dict[str, Any] = {}
        version = None
        try:
            info = _body(await self.client.nodes.info(
                metric="plugins", filter_path="nodes.*.version,nodes.*.modules.name,nodes.*.plugins.name"))
            names: set[str] | None = None
            versions = []
            for node in (info.get("nodes") or {}).values():
                versions.append(str(node.get("version")))
                have = {m.get("name") for m in (node.get("modules") or []) + (node.get("plugins") or [])}
                names = have if names is None else names & have
            version = min(versions, key=lambda v: [int(x) if x.isdigit() else 0 for x in
                                                   re.split(r"[.-]", v)]) if versions else None
            if names is not None:
                found = {"percolator": "percolator" in names, "delete_by_query": "reindex" in names}
        except CLIENT_ERRORS as e:
            if _status(e) not in (401, 403):
                raise IndexError_(f"{self.flavor}: probing the cluster failed: {_describe(e)}") from e
            log.info("cannot list the cluster's modules (%s); assuming percolator and reindex",
                     _describe(e))
        caps = Capabilities(
            flavor=self.flavor, version=version,
            percolator=found.get("percolator", True),
            delete_by_query=found.get("delete_by_query", True),
            arabic_analyzer=await self._analyzes({"analyzer": "arabic", "text": "الناتو"}),
            english_analyzer=await self._analyzes({"analyzer": "english", "text": "nato"}),
            whitespace_tokenizer=await self._analyzes({"tokenizer": {
                "type": "whitespace", "max_token_length": dsl.MAX_TOKEN_CHARS}, "text": "a b"}))
        if caps.missing():
            log.warning("%s %s lacks %s: %s", self.flavor, version or "?", ", ".join(caps.missing()),
                        "alerts use the embedded matcher" if not caps.percolator else "degrading")
        return caps

    def status(self) -> dict:
        """Server, capabilities and what is supported/tested (for `raqib index status`)."""
        caps = self.capabilities
        return {
            "flavor": self.flavor,
            "version": caps.version if caps else None,
            "supported_versions": SUPPORTED_SERVERS[self.flavor]["supported"],
            "tested_versions": list(SUPPORTED_SERVERS[self.flavor]["tested"]),
            "capabilities": {k: v for k, v in asdict(caps).items() if k not in ("flavor", "version")}
            if caps else None,
            "alerts": None if caps is None else ("percolator" if caps.percolator else
                                                 "embedded matcher (the cluster has no percolator)"),
        }

    def _deliveries_body(self) -> dict:
        return {"settings": {"number_of_shards": 1, "number_of_replicas": self.replicas},
                "mappings": {"dynamic": "strict", "properties": {
                    "owner": {"type": "keyword"},
                    "claimed_at": {"type": "date", "format": "epoch_millis"}}}}

    async def _create(self, index: str, body: dict) -> bool:
        """Create an index; False when it already exists (another worker made it)."""
        try:
            await self.client.indices.create(index=index, body=body)
            return True
        except CLIENT_ERRORS as e:
            if _error_type(e) != "resource_already_exists_exception":
                raise IndexError_(f"{self.flavor}: creating {index} failed: {_describe(e)}") from e
            return False

    async def ensure_setup(self) -> None:
        """Template, first article index with both aliases, percolator index (when the cluster
        has a percolator), delivery-claim index. Idempotent and safe to run concurrently
        (from several workers or processes)."""
        async with self._setup_lock:
            if self.capabilities is None:
                self.capabilities = await self.probe()
            caps = self.capabilities
            n = self.names
            ix = self.client.indices
            await self._api("put index template", ix.put_index_template(
                name=n.template, body=_adapt(dsl.article_template(n, self.shards, self.replicas), caps)))
            if not await self._api("alias check", ix.exists_alias(name=n.write_alias)):
                await self._create(n.first_index, dsl.first_index_body(n))
            else:
                # new fields of a newer Raqib reach the existing indices too
                await self._api("update article mappings", ix.put_mapping(
                    index=n.read_alias, body=_adapt(dsl.article_mappings(), caps)))
            if caps.percolator and not await self._create(
                    n.percolator, _adapt(dsl.percolator_index_body(1, self.replicas), caps)):
                await self._api("update percolator mappings", ix.put_mapping(
                    index=n.percolator, body=_adapt(dsl.percolator_mappings(), caps)))
            if not await self._create(n.deliveries, self._deliveries_body()):
                # an index made before claims had a mapping: add the timestamp field
                await self._api("update claim mappings", ix.put_mapping(
                    index=n.deliveries, body={"properties": {
                        "claimed_at": self._deliveries_body()["mappings"]["properties"]["claimed_at"]}}))
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
        if self.supports_percolation:
            subs = await self._api("count subscriptions", self.client.count(index=n.percolator))
        else:
            subs = {"count": len(self._local_subs)}
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
            "server": self.status(),
        }

    async def refresh(self) -> None:
        """Make everything written so far searchable (tests; the engine does it every second)."""
        await self._ensure_ready()
        n = self.names
        names = [n.read_alias, n.deliveries] + ([n.percolator] if self.supports_percolation else [])
        await self._api("refresh", self.client.indices.refresh(index=",".join(names)))

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

    def _shaped(self, doc: dict) -> dict:
        """A document (article or percolated) in the shape the cluster's mapping wants: token
        arrays where there is no whitespace tokenizer (see _adapt)."""
        if self.capabilities is None or self.capabilities.whitespace_tokenizer:
            return doc
        return {**doc, **{f: _token_list(doc[f]) for f in ("title_tokens", "body_tokens") if f in doc}}

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
                await self._bulk([({"index": {"_index": targets[aid], "_id": aid}}, self._shaped(doc))
                                  for aid, doc in docs.items()], list(docs),
                                 refresh=self.refresh_mode)
        except BulkIndexError as e:
            raise BulkIndexError({**unserializable, **e.failed}, e.indexed) from None
        except IndexError_ as e:  # nothing was sent: the whole batch failed
            raise BulkIndexError({**unserializable, **dict.fromkeys(docs, str(e))}, []) from e
        if unserializable:
            raise BulkIndexError(unserializable, list(docs))

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove these articles from whichever time-based index holds each (retention)."""
        if not ids:
            return
        await self._ensure_ready()
        targets = await self._targets(list(ids))
        await self._bulk([({"delete": {"_index": targets[i], "_id": i}}, None) for i in ids], list(ids),
                         ignore_missing_deletes=True, refresh=self.refresh_mode)

    # ---- reading ----

    async def _search(self, index: str, body: dict, what: str = "search") -> dict:
        try:
            return _body(await self.client.search(index=index, body=body))
        except CLIENT_ERRORS as e:
            if _status(e) == 400:
                # The cluster's own wording (a DSL parse error) means nothing to the user; it
                # goes to the log, the user gets Raqib's words.
                log.warning("cluster rejected a query", extra={"what": what, "error": _describe(e)[:500]})
                raise QueryError(f"the {self.flavor} cluster could not run this query "
                                 "(it may be too large or too broad; details in the log)") from e
            raise IndexError_(f"{self.flavor}: {what} failed: {_describe(e)}") from e

    async def search(self, query: str, *, limit: int = 20, cursor: str | None = None,
                     sort: Literal["relevance", "date"] = "relevance") -> SearchPage:
        node = parse(query)
        dsl.sort_spec(sort, True)  # validates `sort`
        after, seen = dsl.decode_cursor(cursor, sort) if cursor else (None, 0)
        await self._ensure_ready()
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
        w = wanted(node)

        def render() -> list[SearchHit]:  # highlighting is CPU work: off the event loop
            return [make_hit(dsl.article_from_source(h["_source"]), float(h.get("_score") or 0.0), w)
                    for h in raw_hits]

        hits = await asyncio.to_thread(render)
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

    async def facets(self, query: str) -> Facets:
        """Matches per topic, source, language and day: one terms/date-histogram aggregation."""
        node = parse(query)
        await self._ensure_ready()
        terms = lambda f: {"terms": {"field": f, "size": FACET_FETCH}}
        body = {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": [dsl.to_dsl(node)]}},
                "aggs": {"topic": terms("topics"), "source": terms("source"), "language": terms("language"),
                         "day": {"date_histogram": {"field": "published", "calendar_interval": "day",
                                                    "time_zone": "UTC", "min_doc_count": 1}}}}
        aggs = (await self._search(self.names.read_alias, body, "facets"))["aggregations"]
        counts = {k: {str(b["key"]): int(b["doc_count"])
                      for b in aggs[k]["buckets"]} for k in ("topic", "source", "language")}
        counts["day"] = {datetime.fromtimestamp(b["key"] / 1000, UTC).strftime("%Y-%m-%d"): int(b["doc_count"])
                         for b in aggs["day"]["buckets"]}
        return facet_lists(counts)

    async def count(self) -> int:
        await self._ensure_ready()
        resp = await self._api("count", self.client.count(index=self.names.read_alias))
        return int(resp["count"])

    # ---- subscriptions (percolator) ----

    async def sync_subscriptions(self, added: Sequence[tuple[str, str]],
                                 removed: Sequence[str] = ()) -> None:
        """Store the `added` (id, query) pairs (new or changed) and delete the `removed` ids,
        and nothing else: subscriptions other workers stored stay. Every query is parsed
        first: a QueryError changes nothing."""
        wanted: dict[str, tuple[str, Any]] = {str(sid): (q, parse(q)) for sid, q in added}
        gone = sorted({str(sid) for sid in removed} - set(wanted))
        await self._ensure_ready()
        if self.supports_percolation:
            index = self.names.percolator
            actions: list[tuple[dict, dict | None]] = [
                ({"index": {"_index": index, "_id": sid}}, dsl.subscription_doc(sid, q, node))
                for sid, (q, node) in wanted.items()]
            actions += [({"delete": {"_index": index, "_id": sid}}, None) for sid in gone]
            if actions:
                await self._bulk(actions, [*wanted, *gone], ignore_missing_deletes=True)
                # subscriptions change rarely; percolation must see them at once
                await self._api("refresh subscriptions", self.client.indices.refresh(index=index))
        elif wanted or gone:
            local = {sid: q for sid, q in self._local_subs.items() if sid not in gone}
            local.update({sid: q for sid, (q, _) in wanted.items()})
            self._local_subs = local
            self._local_version += 1
        for sid in gone:
            self._stored.pop(sid, None)
        self._stored.update({sid: q for sid, (q, _) in wanted.items()})

    async def put_subscriptions(self, subscriptions: Sequence[tuple[str, str]]) -> None:
        """This worker's whole set of (id, query) pairs: stores what is new or changed since
        its last call and deletes what it stored before and no longer has. It never deletes
        a subscription it did not store itself (another worker's, or one stored before this
        process started), so a restarting worker leaves the others' alerts alone."""
        pairs = {str(sid): q for sid, q in subscriptions}
        await self.sync_subscriptions(
            [(sid, q) for sid, q in pairs.items() if self._stored.get(sid) != q],
            [sid for sid in self._stored if sid not in pairs])

    async def _match_locally(self, articles: Sequence[Article]) -> dict[str, list[str]]:
        """percolate() without a percolator: the embedded matcher over the subscriptions this
        instance stored, built and run off the event loop."""
        from alerts.matcher import Matcher

        version = self._local_version
        if self._local_matcher is None or self._local_matcher[0] != version:
            subs = list(self._local_subs.items())
            self._local_matcher = (version, await asyncio.to_thread(Matcher, subs))
        matcher = self._local_matcher[1]

        def run() -> dict[str, list[str]]:
            out: dict[str, set[str]] = {a.id: set() for a in articles}
            for a in articles:  # two versions of one id: what either fires, as the percolator
                out[a.id].update(matcher.match(a))
            return {aid: sorted(subs) for aid, subs in out.items()}

        return await asyncio.to_thread(run)

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
        if not self.supports_percolation:
            return await self._match_locally(articles)
        docs = [self._shaped(dsl.match_doc(a)) for a in articles]
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
        now_ms = int(time.time() * 1000)
        # `create` fails on an existing id at once (realtime, no refresh needed): no
        # refresh=wait_for on this path
        actions = [({"create": {"_index": index, "_id": d}}, {"owner": owner, "claimed_at": now_ms})
                   for d in delivery_ids]
        claimed: set[str] = set()
        conflicts: list[str] = []
        try:
            async for ok, item in self._streaming_bulk(
                    self.client, actions, chunk_size=self.chunk_size, raise_on_error=False,
                    raise_on_exception=False, max_retries=self.max_retries,
                    initial_backoff=self.initial_backoff, max_backoff=self.max_backoff,
                    expand_action_callback=_identity):
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
        if time.monotonic() - self._last_purge > CLAIM_PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            try:
                await self.purge_claims()
            except IndexError_ as e:  # retention is housekeeping: never fails an alert
                log.warning("deleting old delivery claims failed: %s", e)
        return claimed

    async def purge_claims(self, before_ms: int | None = None, wait: bool = False) -> int | None:
        """Delete delivery claims made before `before_ms` (default: older than
        claim_retention_s, far beyond alerts.max_age, so no article old enough to lose its
        claim still alerts). _delete_by_query when the cluster has it (in the background
        unless `wait`), else search + bulk delete in pages. Returns the number deleted when
        known."""
        await self._ensure_ready()
        if before_ms is None:
            before_ms = int((time.time() - self.claim_retention_s) * 1000)
        index = self.names.deliveries
        query = {"range": {"claimed_at": {"lt": before_ms}}}
        assert self.capabilities is not None
        if self.capabilities.delete_by_query:
            # claims are written without a refresh (hot path); this hourly purge must see them
            await self._api("refresh claims", self.client.indices.refresh(index=index))
            resp = await self._api("delete old claims", self.client.delete_by_query(
                index=index, body={"query": query}, conflicts="proceed", wait_for_completion=wait,
                refresh=wait))
            return int(resp.get("deleted", 0)) if wait else None
        deleted = 0
        for _page in range(50):
            await self._api("refresh claims", self.client.indices.refresh(index=index))
            resp = await self._search(index, {"query": query, "size": 1000, "_source": False,
                                              "track_total_hits": False}, "list old claims")
            ids = [h["_id"] for h in resp["hits"]["hits"]]
            if ids:
                await self._bulk([({"delete": {"_index": index, "_id": i}}, None) for i in ids], ids,
                                 ignore_missing_deletes=True)
                deleted += len(ids)
            if len(ids) < 1000:
                break
        return deleted

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
