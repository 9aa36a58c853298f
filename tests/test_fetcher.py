"""The fetch stage against a real local HTTP server (no mocked HTTP)."""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from monitor.errors import FetchError, ResponseTooLarge, RetryLater, TooManyRedirects
from monitor.fetcher import (
    Fetcher,
    FetchSettings,
    backoff_delay,
    check_url,
    parse_retry_after,
    redact_url,
)
from tests import feedserver
from tests.feedserver import http_date

# conftest also loads tests.feedserver as a plugin; re-exporting keeps this file self-contained
# (an alias rather than `from ... import feed_server`, which trips F811 on every test argument).
feed_server = feedserver.feed_server

RSS = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>أخبار</title>"
       "<item><title>خبر عاجل</title><link>https://example.org/1</link></item>"
       "</channel></rss>").encode()

FAST = FetchSettings(connect_timeout=1.0, read_timeout=1.0, total_timeout=2.0, retries=2,
                     backoff_base=0.01, backoff_max=0.05, max_inline_retry_after=2.0,
                     allow_networks=("127.0.0.0/8",))


def settings(**kw) -> FetchSettings:
    from dataclasses import replace

    return replace(FAST, **kw)


@pytest.fixture
async def fetcher():
    async with Fetcher(FAST) as f:
        yield f


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ pure helpers


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("value,expected", [
    ("120", 120.0), (" 7 ", 7.0), ("0", 0.0),
    ("Wed, 01 May 2024 12:01:30 GMT", 90.0),
    ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: go now
    (None, None), ("", None), ("soon", None), ("-5", None),
    ("99999999999999", 7 * 24 * 3600.0), ("Fri, 31 Dec 9999 23:59:59 GMT", 7 * 24 * 3600.0),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_backoff_delay_is_full_jitter_capped():
    s = FetchSettings(backoff_base=0.5, backoff_max=3.0)
    assert backoff_delay(0, s, uniform=lambda a, b: b) == 0.5
    assert backoff_delay(2, s, uniform=lambda a, b: b) == 2.0
    assert backoff_delay(10, s, uniform=lambda a, b: b) == 3.0
    assert backoff_delay(10_000, s, uniform=lambda a, b: b) == 3.0
    assert backoff_delay(3, s, uniform=lambda a, b: a) == 0.0
    assert all(0 <= backoff_delay(4, s) <= 3.0 for _ in range(200))


def test_redact_url_hides_userinfo():
    assert redact_url("https://bob:s3cret@example.org/rss") == "https://***@example.org/rss"
    assert redact_url("https://TOKEN@example.org/a@b") == "https://***@example.org/a@b"
    assert redact_url("https://example.org/a@b") == "https://example.org/a@b"


@pytest.mark.parametrize("url,fragment", [
    ("file:///etc/passwd", "unsupported URL scheme 'file'"),
    ("ftp://example.org/feed.xml", "unsupported URL scheme 'ftp'"),
    ("javascript:alert(1)", "unsupported URL scheme 'javascript'"),
    ("example.org/feed.xml", "no scheme"),
    ("http:///feed.xml", "no host"),
    ("   ", "empty URL"),
    ("http://example.org:99999/", "not a valid URL"),
])
def test_check_url_rejects(url, fragment):
    with pytest.raises(FetchError) as ei:
        check_url(url)
    assert fragment in str(ei.value)


def test_check_url_rejects_credentials_without_leaking_them():
    with pytest.raises(FetchError) as ei:
        check_url("https://bob:hunter2@example.org/rss")
    assert "credentials" in str(ei.value)
    assert "hunter2" not in str(ei.value) and "hunter2" not in ei.value.url


# ------------------------------------------------------------------ against the server


async def test_200_with_validators(feed_server, fetcher):
    lm = "Wed, 01 May 2024 10:00:00 GMT"
    feed_server.set_feed("/rss", RSS, last_modified=lm)
    res = await fetcher.fetch(feed_server.url("/rss"))
    assert res.status == 200 and not res.not_modified
    assert res.body == RSS
    assert res.etag and res.etag.startswith('"')
    assert res.last_modified == lm
    assert res.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert all(k == k.lower() for k in res.headers)
    assert res.url == res.final_url == feed_server.url("/rss")
    assert res.elapsed > 0
    sent = feed_server.requests[0][1]
    assert sent["User-Agent"].startswith("Raqib/")
    assert "gzip" in sent["Accept-Encoding"]
    assert "If-None-Match" not in sent


async def test_304_on_second_fetch_with_our_validators(feed_server, fetcher):
    lm = "Wed, 01 May 2024 10:00:00 GMT"
    feed_server.set_feed("/rss", RSS, last_modified=lm)
    first = await fetcher.fetch(feed_server.url("/rss"))
    second = await fetcher.fetch(feed_server.url("/rss"), first.etag, first.last_modified)
    assert second.status == 304 and second.not_modified and second.body is None
    assert (second.etag, second.last_modified) == (first.etag, lm)
    sent = feed_server.requests[1][1]
    assert sent["If-None-Match"] == first.etag
    assert sent["If-Modified-Since"] == lm


async def test_304_without_validators_keeps_the_ones_we_sent(feed_server, fetcher):
    feed_server.set_status("/rss", 304)
    res = await fetcher.fetch(feed_server.url("/rss"), '"abc"', "Wed, 01 May 2024 10:00:00 GMT")
    assert res.not_modified
    assert res.etag == '"abc"' and res.last_modified == "Wed, 01 May 2024 10:00:00 GMT"


async def test_changed_feed_answers_200_despite_old_etag(feed_server, fetcher):
    feed_server.set_feed("/rss", RSS)
    res = await fetcher.fetch(feed_server.url("/rss"), etag='"stale"')
    assert res.status == 200 and res.body == RSS and res.etag != '"stale"'


async def test_gzip_body_is_decoded(feed_server, fetcher):
    feed_server.set_feed("/gz", RSS * 50, gzip=True)
    res = await fetcher.fetch(feed_server.url("/gz"))
    assert res.body == RSS * 50
    assert res.headers["content-encoding"] == "gzip"


async def test_arabic_path(feed_server, fetcher):
    feed_server.set_feed("/أخبار/عاجل.xml", RSS)
    res = await fetcher.fetch(feed_server.url("/أخبار/عاجل.xml"))
    assert res.body == RSS
    assert feed_server.hits["/أخبار/عاجل.xml"] == 1


@pytest.mark.parametrize("limit", [2, 4])
async def test_per_host_limit_caps_concurrency(feed_server, limit):
    for i in range(8):
        feed_server.set_slow(f"/slow{i}", 0.15, RSS)
    async with Fetcher(settings(per_host_limit=limit)) as f:
        results = await asyncio.gather(*(f.fetch(feed_server.url(f"/slow{i}")) for i in range(8)))
    assert all(r.body == RSS for r in results)
    assert feed_server.max_in_flight == limit


async def test_429_retry_after_waits_inline_then_succeeds(feed_server, fetcher):
    feed_server.set_sequence("/rss", [(429, {"Retry-After": "1"}, b""), (200, {}, RSS)])
    started = time.monotonic()
    res = await fetcher.fetch(feed_server.url("/rss"))
    assert res.body == RSS
    assert time.monotonic() - started >= 1.0
    assert feed_server.hits["/rss"] == 2


async def test_long_retry_after_raises_retry_later_without_waiting(feed_server, fetcher):
    feed_server.set_status("/rss", 429, headers={"Retry-After": "120"})
    started = time.monotonic()
    with pytest.raises(RetryLater) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert ei.value.retry_after == 120.0 and ei.value.status == 429
    assert time.monotonic() - started < 1.0
    assert feed_server.hits["/rss"] == 1
    assert feed_server.url("/rss") in str(ei.value) and "429" in str(ei.value)


async def test_short_retry_after_with_no_retries_left_raises_retry_later(feed_server):
    feed_server.set_status("/rss", 429, headers={"Retry-After": "1"})
    async with Fetcher(settings(retries=0)) as f:
        with pytest.raises(RetryLater) as ei:
            await f.fetch(feed_server.url("/rss"))
    assert ei.value.retry_after == 1.0
    assert feed_server.hits["/rss"] == 1


async def test_503_retry_after_as_http_date(feed_server, fetcher):
    when = http_date(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))
    feed_server.set_status("/rss", 503, headers={"Retry-After": when})
    with pytest.raises(RetryLater) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert ei.value.status == 503
    assert 3590 <= ei.value.retry_after <= 3600


async def test_429_without_retry_after_is_a_plain_error(feed_server, fetcher):
    feed_server.set_status("/rss", 429)
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert not isinstance(ei.value, RetryLater)
    assert ei.value.status == 429 and feed_server.hits["/rss"] == 1


async def test_500_is_retried_then_fails_with_status(feed_server, fetcher):
    feed_server.set_status("/rss", 500)
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert ei.value.status == 500
    assert "HTTP 500 Internal Server Error" in str(ei.value)
    assert feed_server.url("/rss") in str(ei.value)
    assert feed_server.hits["/rss"] == FAST.retries + 1


async def test_transient_500_then_200_recovers(feed_server, fetcher):
    feed_server.set_sequence("/rss", [(502,), (504,), (200, {}, RSS)])
    res = await fetcher.fetch(feed_server.url("/rss"))
    assert res.body == RSS and feed_server.hits["/rss"] == 3


async def test_404_is_not_retried(feed_server, fetcher):
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(feed_server.url("/missing"))
    assert ei.value.status == 404
    assert ei.value.reason == "HTTP 404 Not Found"
    assert feed_server.hits["/missing"] == 1


async def test_slow_feed_times_out_while_fast_feed_succeeds(feed_server):
    feed_server.set_slow("/slow", 10, RSS)
    feed_server.set_feed("/fast", RSS)
    async with Fetcher(settings(total_timeout=0.6, read_timeout=5, retries=0)) as f:

        async def timed(path):
            t = time.monotonic()
            try:
                return await f.fetch(feed_server.url(path)), time.monotonic() - t
            except FetchError as e:
                return e, time.monotonic() - t

        (slow, slow_t), (fast, fast_t) = await asyncio.gather(timed("/slow"), timed("/fast"))
    assert isinstance(slow, FetchError) and "timed out" in str(slow)
    assert feed_server.url("/slow") in str(slow)
    assert 0.5 <= slow_t < 2.0
    assert fast.body == RSS and fast_t < 0.5


async def test_stalled_body_hits_read_timeout_and_is_retried(feed_server):
    feed_server.set_slow("/stall", 10, RSS, stall_after_headers=True)
    async with Fetcher(settings(read_timeout=0.3, total_timeout=5, retries=1)) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(feed_server.url("/stall"))
    assert "timed out" in str(ei.value)
    assert feed_server.hits["/stall"] == 2


async def test_oversize_by_content_length(feed_server):
    feed_server.set_oversize("/big", 2_000_000)
    async with Fetcher(settings(max_bytes=1_000_000)) as f:
        with pytest.raises(ResponseTooLarge) as ei:
            await f.fetch(feed_server.url("/big"))
    assert "Content-Length 2000000" in str(ei.value)
    assert feed_server.hits["/big"] == 1  # not retried


async def test_oversize_while_streaming_without_content_length(feed_server):
    feed_server.set_oversize("/big", 5_000_000, chunked=True)
    async with Fetcher(settings(max_bytes=1_000_000)) as f:
        with pytest.raises(ResponseTooLarge) as ei:
            await f.fetch(feed_server.url("/big"))
    assert "after decompression" in str(ei.value)


async def test_body_exactly_at_the_limit_is_accepted(feed_server):
    feed_server.set_oversize("/edge", 100_000, chunked=True)
    async with Fetcher(settings(max_bytes=100_000)) as f:
        res = await f.fetch(feed_server.url("/edge"))
    assert len(res.body) == 100_000


async def test_gzip_bomb_is_stopped_without_inflating_it(feed_server):
    feed_server.set_gzip_bomb("/bomb", 50 * 1024 * 1024)
    async with Fetcher(settings(max_bytes=1024 * 1024)) as f:
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(ResponseTooLarge):
                await f.fetch(feed_server.url("/bomb"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert time.monotonic() - started < 3.0
    assert peak < 10 * 1024 * 1024, f"peak allocation {peak} bytes: the bomb was inflated"


async def test_redirect_is_followed(feed_server, fetcher):
    feed_server.set_redirect("/old", "/middle", status=301)
    feed_server.set_redirect("/middle", feed_server.url("/new"), status=307)
    feed_server.set_feed("/new", RSS)
    res = await fetcher.fetch(feed_server.url("/old"))
    assert res.body == RSS
    assert res.url == feed_server.url("/old")
    assert res.final_url == feed_server.url("/new")
    assert [p for p, _ in feed_server.requests] == ["/old", "/middle", "/new"]


async def test_conditional_headers_survive_redirects(feed_server, fetcher):
    feed_server.set_feed("/new", RSS)
    first = await fetcher.fetch(feed_server.url("/new"))
    feed_server.set_redirect("/old", "/new")
    res = await fetcher.fetch(feed_server.url("/old"), first.etag)
    assert res.not_modified and res.final_url == feed_server.url("/new")


async def test_redirect_loop(feed_server, fetcher):
    feed_server.set_redirect("/a", "/b")
    feed_server.set_redirect("/b", "/a")
    with pytest.raises(TooManyRedirects) as ei:
        await fetcher.fetch(feed_server.url("/a"))
    assert "loop" in str(ei.value)
    assert feed_server.hits["/a"] == 1 and feed_server.hits["/b"] == 1


async def test_too_many_redirects(feed_server):
    for i in range(5):
        feed_server.set_redirect(f"/r{i}", f"/r{i + 1}")
    feed_server.set_feed("/r5", RSS)
    async with Fetcher(settings(max_redirects=4)) as f:
        with pytest.raises(TooManyRedirects) as ei:
            await f.fetch(feed_server.url("/r0"))
        assert "more than 4 redirects" in str(ei.value)
        assert feed_server.hits["/r5"] == 0
    async with Fetcher(settings(max_redirects=5)) as f:
        assert (await f.fetch(feed_server.url("/r0"))).body == RSS


@pytest.mark.parametrize("location,why", [
    ("file:///etc/passwd", "unsupported URL scheme 'file'"),
    ("ftp://127.0.0.1/feed", "unsupported URL scheme 'ftp'"),
    ("http://user:hunter2@127.0.0.1/feed", "credentials"),
])
async def test_redirect_to_forbidden_url_is_refused(feed_server, fetcher, location, why):
    feed_server.set_redirect("/rss", location)
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert why in str(ei.value) and "refused redirect" in str(ei.value)
    assert "hunter2" not in str(ei.value)


async def test_redirect_without_location(feed_server, fetcher):
    feed_server.set_status("/rss", 302)
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(feed_server.url("/rss"))
    assert "without a Location" in str(ei.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml"])
async def test_non_http_scheme_makes_no_request(feed_server, fetcher, url):
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(url)
    assert "unsupported URL scheme" in str(ei.value)
    assert url in str(ei.value)
    assert feed_server.requests == []


async def test_credentials_in_url_are_refused_and_not_echoed(feed_server, fetcher):
    url = feed_server.url("/rss").replace("http://", "http://bob:hunter2@")
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(url)
    assert "hunter2" not in str(ei.value)
    assert feed_server.requests == []


async def test_connection_refused(fetcher):
    url = f"http://127.0.0.1:{free_port()}/rss"
    with pytest.raises(FetchError) as ei:
        await fetcher.fetch(url)
    assert url in str(ei.value)
    assert "connection to 127.0.0.1" in str(ei.value) and "failed" in str(ei.value)
    assert ei.value.status is None


async def test_unresolvable_host():
    async with Fetcher(settings(retries=0)) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch("http://no-such-host.invalid/rss")
    assert "no-such-host.invalid" in str(ei.value)
    assert type(ei.value) is FetchError


async def test_fetch_outside_context_is_a_programming_error():
    with pytest.raises(RuntimeError):
        await Fetcher().fetch("http://127.0.0.1/")


# ------------------------------------------------------------------ one deadline per poll
# Bounds are generous (2x the deadline): they check that the deadline holds, not speed.


async def timed_fetch(f: Fetcher, url: str) -> tuple[BaseException | object, float]:
    t = time.monotonic()
    try:
        result: BaseException | object = await f.fetch(url)
    except FetchError as e:
        result = e
    return result, time.monotonic() - t


async def test_slowloris_costs_one_deadline_retries_included(feed_server):
    """1 byte per 0.2 s never trips read_timeout; with the rate guard off, the deadline ends it."""
    feed_server.set_trickle("/loris", 0.2)
    async with Fetcher(settings(total_timeout=1.5, read_timeout=5, retries=2, min_rate=0)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/loris"))
    assert isinstance(err, FetchError) and "1.5s deadline" in str(err)
    assert elapsed < 3.0
    assert feed_server.hits["/loris"] == 1  # no attempt starts after the deadline


async def test_minimum_rate_ends_slowloris_before_the_deadline(feed_server):
    feed_server.set_trickle("/loris", 0.2)
    async with Fetcher(settings(total_timeout=30, read_timeout=5, retries=0, min_rate=100,
                                rate_window=0.5)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/loris"))
    assert isinstance(err, FetchError) and "too slow" in str(err), err
    assert "minimum 100 bytes/s" in str(err)
    assert elapsed < 15  # far inside the 30 s deadline


async def test_body_silence_longer_than_the_rate_window_ends_the_fetch(feed_server):
    feed_server.set_slow("/stall", 30, RSS, stall_after_headers=True)
    async with Fetcher(settings(total_timeout=30, read_timeout=20, retries=0, min_rate=1,
                                rate_window=0.5)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/stall"))
    assert isinstance(err, FetchError) and "too slow: " in str(err), err
    assert elapsed < 15


async def test_a_fast_body_passes_the_rate_guard(feed_server):
    feed_server.set_oversize("/big", 500_000, chunked=True)
    async with Fetcher(settings(min_rate=10_000, rate_window=0.2, max_bytes=1_000_000)) as f:
        res = await f.fetch(feed_server.url("/big"))
    assert len(res.body) == 500_000


@pytest.mark.parametrize("stall_after_headers", [False, True])
async def test_silent_server_ends_at_the_deadline_not_per_attempt(feed_server, stall_after_headers):
    feed_server.set_slow("/silent", 30, RSS, stall_after_headers=stall_after_headers)
    async with Fetcher(settings(total_timeout=1.0, read_timeout=20, connect_timeout=20, retries=3,
                                min_rate=0)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/silent"))
    assert isinstance(err, FetchError) and "deadline" in str(err)
    assert elapsed < 2.0
    assert feed_server.hits["/silent"] == 1


async def test_retries_stop_at_the_deadline(feed_server):
    feed_server.set_status("/flaky", 500)
    async with Fetcher(settings(total_timeout=1.0, retries=1000, backoff_base=0.1,
                                backoff_max=0.1)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/flaky"))
    assert isinstance(err, FetchError) and err.status == 500
    assert elapsed < 3.0  # the 1 s deadline plus slack for a loaded machine; without it: ~100 s
    assert 2 <= feed_server.hits["/flaky"] < 1000  # retried, but only while time was left


async def test_retry_after_beyond_the_deadline_is_left_to_the_scheduler(feed_server):
    feed_server.set_status("/busy", 503, headers={"Retry-After": "2"})
    async with Fetcher(settings(total_timeout=1.0, max_inline_retry_after=5, retries=3)) as f:
        err, elapsed = await timed_fetch(f, feed_server.url("/busy"))
    assert isinstance(err, RetryLater) and err.retry_after == 2.0
    assert elapsed < 1.0  # did not sleep past the deadline
    assert feed_server.hits["/busy"] == 1


async def test_headers_dribbled_byte_by_byte_end_at_the_deadline():
    """Slowloris before the body: aiohttp parses headers itself, so only the deadline can end it."""
    stop = asyncio.Event()

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.2)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(dribble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Fetcher(settings(total_timeout=1.0, read_timeout=5, retries=3)) as f:
            err, elapsed = await timed_fetch(f, f"http://127.0.0.1:{port}/rss")
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
    assert isinstance(err, FetchError) and "deadline" in str(err)
    assert elapsed < 2.0
