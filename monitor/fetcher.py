"""HTTP fetch stage: one shared aiohttp session, conditional GET, bounded bodies, polite retries.

Feed URLs are untrusted input, so every hop is checked (scheme, host, no credentials), every
connection's resolved address must pass the address policy (monitor.netpolicy), the body is
capped after decompression (gzip bombs) and must keep a minimum rate (slowloris), one deadline
bounds a whole poll (retries included), and failures always surface as `FetchError` subclasses
whose message names the (redacted) URL and the cause, never as raw aiohttp exceptions.

Needs aiohttp >= 3.13.3: older releases inflate a whole network chunk at once, so a gzip bomb
could allocate far more than `max_bytes` before our streaming counter sees it.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Self

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from monitor.errors import FetchError, ResponseTooLarge, RetryLater, TooManyRedirects
from monitor.netpolicy import AddressPolicy, AddressRefused, PolicyResolver
from monitor.redact import redact_url

log = logging.getLogger(__name__)

HAS_BROTLI = any(importlib.util.find_spec(m) is not None for m in ("brotlicffi", "brotli"))
ACCEPT_ENCODING = "gzip, deflate" + (", br" if HAS_BROTLI else "")
ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8")
ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
CHUNK_SIZE = 64 * 1024
MAX_RETRY_AFTER = 7 * 24 * 3600.0  # a hostile header must not park a feed forever (or overflow dates)


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str = "Raqib/0.1 (+https://github.com/raqib/raqib)"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0  # one poll: every attempt, redirect hop, back-off and body, queueing included
    max_bytes: int = 10 * 1024 * 1024  # enforced on Content-Length AND on the decompressed body
    max_redirects: int = 5
    per_host_limit: int = 2
    total_limit: int = 100
    retries: int = 2  # extra attempts for transient failures
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_inline_retry_after: float = 5.0  # longer Retry-After -> RetryLater for the scheduler
    min_rate: float = 256.0  # bytes/s over `rate_window` once the body has started; 0 = off
    rate_window: float = 10.0  # seconds; also the longest silence tolerated inside a body
    allow_networks: tuple[str, ...] = ()  # CIDRs that may be non-public (intranet feeds, tests)


@dataclass(frozen=True)
class FetchResult:
    url: str
    final_url: str
    status: int
    body: bytes | None  # decompressed; None on 304
    headers: dict[str, str]  # keys lower-cased
    etag: str | None
    last_modified: str | None
    elapsed: float  # seconds for the whole fetch() call, retries included

    @property
    def not_modified(self) -> bool:
        return self.status == 304


# ---------------------------------------------------------------- pure helpers


def check_url(url: str) -> URL:
    """Parse an untrusted feed URL, accepting only http(s) with a host and no credentials."""
    shown = redact_url(url)
    text = url.strip()
    if not text:
        raise FetchError(shown, "empty URL")
    try:
        parsed = URL(text)
        parsed.port  # noqa: B018 - yarl validates the port lazily
    except (ValueError, TypeError) as e:
        raise FetchError(shown, f"not a valid URL ({e})") from None
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        what = f"unsupported URL scheme {scheme!r}" if scheme else "URL has no scheme"
        raise FetchError(shown, f"{what}: only http:// and https:// feeds can be fetched")
    if not parsed.host:
        raise FetchError(shown, "URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise FetchError(shown, "credentials in the URL are not supported (user-info was not sent)")
    return parsed.with_fragment(None)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable.

    Capped at MAX_RETRY_AFTER so absurd values stay usable in `now + timedelta(seconds=...)`.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, settings: FetchSettings,
                  uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Full-jitter exponential back-off: spreads retries so many feeds don't stampede a host."""
    cap = min(settings.backoff_max, settings.backoff_base * 2 ** min(attempt, 62))
    return uniform(0, cap)


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """Validators from the previous fetch, so an unchanged feed costs a 304 and no body."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Flatten a multi-dict to lower-cased keys, joining repeats the way HTTP allows."""
    out: dict[str, str] = {}
    for k, v in headers.items():
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def status_text(status: int, reason: str | None = None) -> str:
    """`HTTP 404 Not Found`, falling back to the standard phrase when the server sent none."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"HTTP {status} {reason}".rstrip()


def redirect_target(current: URL, location: str | None, status: int, origin: str) -> URL:
    """Resolve and vet a Location header exactly like a user-supplied URL."""
    if not location:
        raise FetchError(origin, f"{status_text(status)} redirect without a Location header")
    try:
        target = current.join(URL(location.strip()))
    except (ValueError, TypeError) as e:
        shown = redact_url(location)
        raise FetchError(origin, f"redirect to an invalid URL {shown!r} ({e})") from None
    try:
        return check_url(str(target))
    except FetchError as e:
        raise FetchError(origin, f"refused redirect to {e.url}: {e.reason}") from None


# ---------------------------------------------------------------- transport


class _Transient(Exception):
    """Internal: a failure worth retrying; carries the error to raise if retries run out."""

    def __init__(self, error: FetchError, retry_after: float | None = None, timed_out: bool = False):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.timed_out = timed_out


def _timeout_error(url: str, exc: BaseException, s: FetchSettings, hop: str) -> FetchError:
    """Say which timeout fired; aiohttp >= 3.10 distinguishes connect and read timeouts."""
    if isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ())):
        what = f"connect timed out after {s.connect_timeout:g}s"
    elif isinstance(exc, getattr(aiohttp, "SocketTimeoutError", ())):
        what = f"read timed out (no data for {s.read_timeout:g}s)"
    else:
        what = f"timed out: the poll's {s.total_timeout:g}s deadline passed"
    return FetchError(url, what + hop)


def _client_error(url: str, exc: aiohttp.ClientError, hop: str) -> tuple[FetchError, bool]:
    """Map an aiohttp error to (FetchError, transient?) with a message naming the cause."""
    refused = getattr(exc, "os_error", None)
    if isinstance(refused, AddressRefused):
        return FetchError(url, f"{refused}{hop}"), False
    if isinstance(exc, aiohttp.ClientSSLError):
        return FetchError(url, f"TLS error: {exc}{hop}"), False
    if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", ())):
        return FetchError(url, f"could not resolve host {exc.host!r}: {exc.os_error}{hop}"), True
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        cause = os.strerror(errno) if errno else str(exc.os_error)
        return FetchError(url, f"connection to {exc.host}:{exc.port} failed: {cause}{hop}"), True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return FetchError(url, f"server disconnected without a complete response{hop}"), True
    if isinstance(exc, aiohttp.ClientConnectionError):
        return FetchError(url, f"connection error: {exc or type(exc).__name__}{hop}"), True
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError(url, f"could not read the response body: {exc}{hop}"), False
    if isinstance(exc, aiohttp.ClientResponseError):
        return FetchError(url, f"invalid HTTP response: {exc.message}{hop}"), False
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError(url, f"invalid URL: {exc}{hop}"), False
    return FetchError(url, f"{type(exc).__name__}: {exc}{hop}"), False


def _status_error(resp: aiohttp.ClientResponse, shown: str, hop: str) -> Exception:
    """FetchError for a non-success status; transient ones wrapped for the retry loop."""
    error = FetchError(shown, status_text(resp.status, resp.reason) + hop, status=resp.status)
    retry_after = None
    if resp.status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(UTC))
    if retry_after is not None or resp.status in TRANSIENT_STATUSES:
        return _Transient(error, retry_after)
    return error


class Fetcher:
    """Fetches feeds through one pooled session; use as `async with Fetcher(settings) as f`."""

    def __init__(self, settings: FetchSettings | None = None, *,
                 resolver: AbstractResolver | None = None):
        """`resolver` replaces DNS (tests use a stub); the address policy applies either way."""
        self.settings = settings or FetchSettings()
        self.policy = AddressPolicy(self.settings.allow_networks)
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        s = self.settings
        # The policy sees every resolved address (resolver) and every connect (socket factory),
        # so neither a redirect nor a name that re-resolves elsewhere can reach a refused address.
        self._policy_resolver = PolicyResolver(self.policy, self._resolver)
        connector = aiohttp.TCPConnector(limit=s.total_limit, limit_per_host=s.per_host_limit,
                                         ttl_dns_cache=300, resolver=self._policy_resolver,
                                         socket_factory=self.policy.socket_factory)
        # sock_connect, not connect: waiting for a pool slot is not a connect failure. The
        # poll's deadline (total_timeout) is enforced by fetch() across all attempts.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout,
                                        sock_read=s.read_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=True, trust_env=False,
            headers={"User-Agent": s.user_agent, "Accept": ACCEPT,
                     "Accept-Encoding": ACCEPT_ENCODING})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await self._policy_resolver.close()  # a resolver we pass in is ours to close

    async def fetch(self, url: str, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        """GET a feed, retrying transient failures within one deadline; raises FetchError."""
        if self._session is None:
            raise RuntimeError("Fetcher is not open: use `async with Fetcher(...) as fetcher`")
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.total_timeout  # the loop's clock, for timeout_at
        target = check_url(url)
        shown = redact_url(url)
        headers = conditional_headers(etag, last_modified)
        attempt = 0
        while True:
            try:
                result = await self._attempt(url, shown, target, headers, deadline)
            except _Transient as t:
                delay = self._retry_delay(t, attempt, shown, deadline - loop.time())
                attempt += 1
                log.debug("retrying feed fetch", extra={"url": shown, "attempt": attempt,
                                                        "delay": round(delay, 3),
                                                        "error": t.error.reason})
                await asyncio.sleep(delay)
                continue
            if result.status == 304:  # a 304 may omit validators; ours are still current
                result = replace(result, etag=result.etag or etag,
                                 last_modified=result.last_modified or last_modified)
            return replace(result, elapsed=time.monotonic() - started)

    def _retry_delay(self, t: _Transient, attempt: int, shown: str, remaining: float) -> float:
        """How long to wait before the next attempt, or raise if we should stop here.

        A retry that could not start before the poll's deadline is not made: one feed costs at
        most `total_timeout` per poll, however many attempts that leaves.
        """
        s = self.settings
        if t.retry_after is not None:
            if (t.retry_after > s.max_inline_retry_after or attempt >= s.retries
                    or t.retry_after >= remaining):
                raise RetryLater(shown, f"{t.error.reason}; retry after {t.retry_after:g}s",
                                 t.error.status or 0, t.retry_after) from None
            return t.retry_after
        delay = backoff_delay(attempt, s)
        if attempt >= s.retries or t.timed_out or delay >= remaining:
            raise t.error from None
        return delay

    async def _attempt(self, url: str, shown: str, target: URL,
                       headers: dict[str, str], deadline: float) -> FetchResult:
        """One try: follow redirects by hand, bounded by the poll's deadline; map every failure."""
        s = self.settings
        hop = ""
        try:
            async with asyncio.timeout_at(deadline):
                current = target
                visited = {str(target)}
                redirects = 0
                while True:
                    hop = "" if current == target else f" (at {redact_url(str(current))})"
                    result = await self._request(url, shown, current, headers, hop)
                    if isinstance(result, FetchResult):
                        return result
                    status, location = result
                    current = redirect_target(current, location, status, shown)
                    redirects += 1
                    if str(current) in visited:
                        raise TooManyRedirects(shown, f"redirect loop back to {redact_url(str(current))}",
                                               status=status)
                    if redirects > s.max_redirects:
                        raise TooManyRedirects(shown, f"more than {s.max_redirects} redirects "
                                                      f"(last to {redact_url(str(current))})", status=status)
                    visited.add(str(current))
        except TimeoutError as e:
            error = _timeout_error(shown, e, s, hop)
            # The poll's deadline has passed: nothing is left for another attempt.
            raise _Transient(error, timed_out=asyncio.get_running_loop().time() >= deadline) from None
        except aiohttp.ClientError as e:
            error, transient = _client_error(shown, e, hop)
            if transient:
                raise _Transient(error) from None
            raise error from None

    async def _request(self, url: str, shown: str, current: URL, headers: dict[str, str],
                       hop: str) -> FetchResult | tuple[int, str | None]:
        """One HTTP exchange: a result, a (status, Location) redirect, or an exception."""
        assert self._session is not None
        async with self._session.get(current, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            if status in REDIRECT_STATUSES:
                return status, resp.headers.get("Location")
            if status == 304 or 200 <= status < 300:
                body = None if status == 304 else await self._read_body(resp, shown)
                return FetchResult(url=url, final_url=str(current), status=status, body=body,
                                   headers=lower_headers(resp.headers),
                                   etag=resp.headers.get("ETag"),
                                   last_modified=resp.headers.get("Last-Modified"), elapsed=0.0)
            raise _status_error(resp, shown, hop)

    async def _read_body(self, resp: aiohttp.ClientResponse, shown: str) -> bytes:
        """Stream the decompressed body, stopping as soon as it passes max_bytes or falls below
        min_rate over the last rate_window seconds (a slowloris ends early, not at the deadline)."""
        s = self.settings
        limit = s.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise ResponseTooLarge(shown, f"response too large: Content-Length {declared} bytes "
                                          f"exceeds the {limit}-byte limit", status=resp.status)
        rate = RateGuard(s.min_rate, s.rate_window, asyncio.get_running_loop().time)
        chunks: list[bytes] = []
        size = 0
        while True:
            wait = rate.patience()
            try:
                async with asyncio.timeout(wait) as tm:
                    chunk = await resp.content.read(CHUNK_SIZE)
            except TimeoutError:
                if not tm.expired():
                    raise  # the poll's deadline, handled by the caller
                chunk = None
            if chunk == b"":
                return b"".join(chunks)
            if chunk is not None:
                size += len(chunk)
                if size > limit:
                    resp.close()
                    raise ResponseTooLarge(shown, f"response too large: body exceeds the {limit}-byte "
                                                  f"limit after decompression", status=resp.status)
                chunks.append(chunk)
            problem = rate.add(len(chunk or b""))
            if problem:
                resp.close()
                raise FetchError(shown, problem, status=resp.status)


class RateGuard:
    """Minimum transfer rate over a sliding window, measured from the first body read."""

    def __init__(self, min_rate: float, window: float, clock: Callable[[], float]):
        self.min_rate = min_rate
        self.window = window
        self.clock = clock
        self.started = clock()
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.in_window = 0

    def patience(self) -> float | None:
        """How long the next read may wait: a whole window of silence is already too slow."""
        return self.window if self.min_rate > 0 else None

    def add(self, n: int) -> str | None:
        """Record `n` bytes; a one-line reason if the window's rate is below the minimum."""
        if self.min_rate <= 0:
            return None
        now = self.clock()
        self.samples.append((now, n))
        self.in_window += n
        while self.samples and self.samples[0][0] < now - self.window:
            self.in_window -= self.samples.popleft()[1]
        if now - self.started < self.window or self.in_window >= self.min_rate * self.window:
            return None
        return (f"too slow: {self.in_window} bytes in the last {self.window:g}s "
                f"(minimum {self.min_rate:g} bytes/s)")
