"""A real HTTP server on 127.0.0.1 for tests: feeds, statuses, redirects, slow and hostile bodies.

Enable it in a conftest with `pytest_plugins = ["tests.feedserver"]` and take the `feed_server`
fixture. Paths are matched on the decoded request path, so Arabic paths work as written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gzip as gzip_module
import hashlib
import socket
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

import pytest_asyncio
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHUNK = 64 * 1024
_ZEROS = bytes(_CHUNK)


class FeedServer:
    """Programmable responses per path; records every request and the concurrency it saw."""

    def __init__(self) -> None:
        self.base_url = ""
        self.port = 0
        self.hits: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._routes: dict[str, Handler] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1") -> FeedServer:
        """Listen on `host` (any 127.x.y.z works on Linux: address-policy tests use 127.0.0.2)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://{host}:{self.port}"
        return self

    async def stop(self) -> None:
        self._closing.set()  # wakes slow handlers so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def reset_counters(self) -> None:
        self.hits.clear()
        self.requests.clear()
        self.max_in_flight = 0

    # ------------------------------------------------------------ routes

    def set_feed(self, path: str, body: bytes, *,
                 content_type: str = "application/rss+xml; charset=utf-8",
                 etag: str | bool | None = True, last_modified: str | None = None,
                 headers: dict[str, str] | None = None, gzip: bool = False) -> None:
        """A feed with validators; answers 304 to a matching conditional GET."""
        if etag is True:
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        elif etag is False:
            etag = None
        payload = gzip_module.compress(body) if gzip else body

        async def handler(request: web.Request) -> web.StreamResponse:
            h = {"Content-Type": content_type, **(headers or {})}
            if etag:
                h["ETag"] = etag
            if last_modified:
                h["Last-Modified"] = last_modified
            if _not_modified(request, etag, last_modified):
                h.pop("Content-Type", None)
                return web.Response(status=304, headers=h)
            if gzip:
                h["Content-Encoding"] = "gzip"
            return web.Response(body=payload, headers=h)

        self._routes[path] = handler

    def set_status(self, path: str, status: int, *, headers: dict[str, str] | None = None,
                   body: bytes = b"") -> None:
        self.set_sequence(path, [(status, headers or {}, body)])

    def set_sequence(self, path: str, responses: list) -> None:
        """Successive requests get successive (status, headers, body); the last one repeats."""
        queue = [_normalise(r) for r in responses]
        if not queue:
            raise ValueError("set_sequence needs at least one response")
        counter = {"n": 0}

        async def handler(request: web.Request) -> web.StreamResponse:
            status, headers, body = queue[min(counter["n"], len(queue) - 1)]
            counter["n"] += 1
            return web.Response(status=status, headers=headers, body=body or None)

        self._routes[path] = handler

    def set_slow(self, path: str, delay: float, body: bytes, *, stall_after_headers: bool = False,
                 content_type: str = "application/rss+xml; charset=utf-8") -> None:
        """Sleep `delay` before answering, or (stall_after_headers) send headers then stall."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if not stall_after_headers:
                await self._sleep(delay)
                return web.Response(body=body, content_type=None,
                                    headers={"Content-Type": content_type})
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            resp.content_length = len(body)
            await resp.prepare(request)
            half = len(body) // 2
            await resp.write(body[:half])
            await self._sleep(delay)
            await resp.write(body[half:])
            await resp.write_eof()
            return resp

        self._routes[path] = handler

    def set_trickle(self, path: str, interval: float, size: int = 1_000_000) -> None:
        """Slowloris: headers at once, then one byte of body every `interval` seconds."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            resp.content_length = size
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, RuntimeError):
                for _ in range(size):
                    await resp.write(b" ")
                    await self._sleep(interval)
                    if self._closing.is_set():
                        break
            return resp

        self._routes[path] = handler

    def set_redirect(self, path: str, to_path: str, status: int = 302) -> None:
        """Location is sent verbatim: a path (relative redirect) or any absolute URL."""
        self.set_status(path, status, headers={"Location": to_path})

    def set_gzip_bomb(self, path: str, decompressed_size: int) -> None:
        """A tiny gzip body (with an honest, small Content-Length) that inflates enormously."""
        payload = _gzip_zeros(decompressed_size)

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=payload, headers={"Content-Encoding": "gzip",
                                                       "Content-Type": "application/rss+xml"})

        self._routes[path] = handler

    def set_oversize(self, path: str, size: int, *, chunked: bool = False) -> None:
        """`size` bytes of body, streamed; with Content-Length unless `chunked`."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            if chunked:
                resp.enable_chunked_encoding()
            else:
                resp.content_length = size
            await resp.prepare(request)
            remaining = size
            try:
                while remaining > 0:
                    n = min(remaining, _CHUNK)
                    await resp.write(b" " * n)
                    remaining -= n
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client hung up once it had seen enough: that is the point
            return resp

        self._routes[path] = handler

    def set_handler(self, path: str, handler: Handler) -> None:
        """Escape hatch for anything the helpers above do not cover."""
        self._routes[path] = handler

    # ------------------------------------------------------------ internals

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.requests.append((path, dict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            handler = self._routes.get(path)
            if handler is None:
                return web.Response(status=404, text=f"no route for {path}")
            return await handler(request)
        finally:
            self.in_flight -= 1


@functools.lru_cache(maxsize=8)
def _gzip_zeros(size: int) -> bytes:
    """gzip of `size` zero bytes, built chunk by chunk so the inflated size is never held."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = []
    remaining = size
    while remaining > 0:
        n = min(remaining, _CHUNK)
        parts.append(comp.compress(_ZEROS[:n]))
        remaining -= n
    parts.append(comp.flush())
    return b"".join(parts)


def _normalise(item: object) -> tuple[int, dict[str, str], bytes]:
    """Accept 200, (200,), (200, headers) or (200, headers, body)."""
    if isinstance(item, int):
        return item, {}, b""
    t = tuple(item)  # type: ignore[arg-type]
    status = t[0]
    headers = dict(t[1]) if len(t) > 1 and t[1] else {}
    body = t[2] if len(t) > 2 else b""
    return status, headers, body.encode() if isinstance(body, str) else body


def _not_modified(request: web.Request, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match wins; otherwise If-Modified-Since >= Last-Modified."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if not etag:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = request.headers.get("If-Modified-Since")
    if ims and last_modified:
        try:
            return parsedate_to_datetime(ims) >= parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            return False
    return False


def http_date(dt: datetime) -> str:
    """An RFC 9110 HTTP-date for an aware datetime."""
    return format_datetime(dt, usegmt=True)


@pytest_asyncio.fixture
async def feed_server():
    server = await FeedServer().start()
    try:
        yield server
    finally:
        await server.stop()
