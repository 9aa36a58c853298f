"""No secret in any log: URL secrets are redacted in every record, whichever logger made it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from monitor.errors import FetchError
from monitor.fetcher import Fetcher, FetchSettings, check_url
from monitor.logs import setup_logging
from monitor.redact import check_feed_url, redact_text, redact_url

SECRETS = ["hunter2", "S3CRETtoken", "XXXXwebhooksecretXXXX", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
           "discordtokenABC-def_123", "abcdef0123456789sig"]


@pytest.mark.parametrize("text,expected", [
    ("https://bob:hunter2@example.org/rss", "https://***@example.org/rss"),
    ("https://TOKEN@example.org/a@b", "https://***@example.org/a@b"),
    ("https://example.org/a@b", "https://example.org/a@b"),
    ("mailtos://alerts:hunter2@smtp.example.org?to=desk@example.org",
     "mailtos://***@smtp.example.org?to=desk@example.org"),
    ("https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
     "https://api.telegram.org/bot***/sendMessage"),
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234", "tgram://***"),
    ("https://hooks.slack.com/services/T000AAA/B000BBB/XXXXwebhooksecretXXXX",
     "https://hooks.slack.com/services/***"),
    ('POST /services/T000AAA/B000BBB/XXXXwebhooksecretXXXX HTTP/1.1',
     'POST /services/*** HTTP/1.1'),
    ("https://discord.com/api/webhooks/123456789012/discordtokenABC-def_123",
     "https://discord.com/api/webhooks/***"),
    ("discord://123456789012/discordtokenABC-def_123", "discord://***"),
    ("https://x.org/rss?token=S3CRETtoken&page=2", "https://x.org/rss?token=***&page=2"),
    ("https://x.org/rss?page=2&api_key=S3CRETtoken", "https://x.org/rss?page=2&api_key=***"),
    ("https://x.org/rss?ACCESS_TOKEN=S3CRETtoken#top", "https://x.org/rss?ACCESS_TOKEN=***#top"),
    ("/hook?sig=abcdef0123456789sig&signature=abc&password=hunter2&secret=s&key=k",
     "/hook?sig=***&signature=***&password=***&secret=***&key=***"),
    ("https://x.org/rss?keyword=nato&monkey=1", "https://x.org/rss?keyword=nato&monkey=1"),
    ("Authorization: Bearer S3CRETtoken.abc", "Authorization: Bearer ***"),
    ("feed failed: https://example.org/rss", "feed failed: https://example.org/rss"),
    ("", ""),
])
def test_redact_text(text, expected):
    assert redact_text(text) == expected == redact_url(text)
    assert redact_text(expected) == expected  # idempotent


@pytest.fixture
def log_output():
    """setup_logging() into a buffer at DEBUG; the previous logging state is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogRecordFactory()
    levels = {n: logging.getLogger(n).level for n in ("urllib3", "aiohttp", "apprise")}
    buf = io.StringIO()

    def setup(json_format: bool = False) -> io.StringIO:
        setup_logging("DEBUG", json_format=json_format, stream=buf)
        return buf

    yield setup
    root.handlers[:], root.level = saved[0], saved[1]
    logging.setLogRecordFactory(saved[2])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _log_everything() -> None:
    # urllib3 logs the request path (not the host) at DEBUG, exactly like this:
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "https", "hooks.slack.com", 443, "POST",
        "/services/T000AAA/B000BBB/XXXXwebhooksecretXXXX", "HTTP/1.1", 200, 2)
    logging.getLogger("aiohttp.client").debug("GET https://bob:hunter2@example.org/rss")
    logging.getLogger("apprise").info(
        "Sending to https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/x")
    logging.getLogger("raqib.pipeline").error(
        "feed failed", extra={"url": "https://x.org/rss?token=S3CRETtoken",
                              "error": "redirect to discord://123456789012/discordtokenABC-def_123"})
    try:
        raise ValueError("https://x.org/h?sig=abcdef0123456789sig")
    except ValueError:
        logging.getLogger("alerts.delivery").exception("delivery crashed")


@pytest.mark.parametrize("json_format", [False, True])
def test_no_secret_reaches_the_log_from_any_logger_at_any_level(log_output, json_format):
    buf = log_output(json_format)
    _log_everything()
    out = buf.getvalue()
    for secret in SECRETS:
        assert secret not in out
    assert out.count("***") >= 7
    assert "hooks.slack.com:443" in out and "/services/***" in out  # the rest stays readable
    if json_format:
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [r["logger"] for r in lines][:3] == ["urllib3.connectionpool", "aiohttp.client", "apprise"]


def test_handlers_added_later_get_redacted_messages(log_output):
    """A handler that is not ours (pytest's capture, a library's) still gets redacted records."""
    log_output()
    other = io.StringIO()
    handler = logging.StreamHandler(other)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger("urllib3").addHandler(handler)
    try:
        logging.getLogger("urllib3.connectionpool").debug(
            "POST %s", "/api/webhooks/123456789012/discordtokenABC-def_123")
    finally:
        logging.getLogger("urllib3").removeHandler(handler)
    assert "discordtokenABC" not in other.getvalue()
    assert "urllib3.connectionpool POST /api/webhooks/***" in other.getvalue()


def test_a_malformed_log_call_is_not_turned_into_a_crash(log_output):
    buf = log_output()
    logging.getLogger("x").warning("%s %s", "only one arg")  # logging reports it, we must not raise
    logging.getLogger("x").warning("after https://bob:hunter2@h/")
    assert "hunter2" not in buf.getvalue() and "after https://***@h/" in buf.getvalue()


# ------------------------------------------------------------------ URLs refused without echo


@pytest.mark.parametrize("url", ["https://bob:hunter2@example.org/rss", "http://hunter2@example.org/",
                                 "ftp://bob:hunter2@example.org/feed", "gopher://hunter2@x/"])
def test_feed_url_with_credentials_is_refused_without_echo(url):
    with pytest.raises(ValueError) as ei:
        check_feed_url(url)
    assert "hunter2" not in str(ei.value) and "***@" in str(ei.value)


@pytest.mark.parametrize("url", ["ftp://example.org/feed", "file:///etc/passwd", "example.org/rss",
                                 "http:///rss"])
def test_feed_url_must_be_http(url):
    with pytest.raises(ValueError) as ei:
        check_feed_url(url)
    assert "http(s)" in str(ei.value)


def test_plain_feed_url_is_accepted():
    assert check_feed_url("https://example.org/rss?page=1") == "https://example.org/rss?page=1"


@pytest.mark.parametrize("url", ["ftp://bob:hunter2@127.0.0.1/feed", "mailto://bob:hunter2@x",
                                 "http://bob:hunter2@127.0.0.1/rss"])
def test_refused_fetch_urls_are_not_echoed(url):
    with pytest.raises(FetchError) as ei:
        check_url(url)
    assert "hunter2" not in str(ei.value) and "***@" in str(ei.value)


async def test_fetch_error_hides_a_query_token(feed_server):
    feed_server.set_status("/rss", 404)
    async with Fetcher(FetchSettings(retries=0, allow_networks=("127.0.0.0/8",))) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(feed_server.url("/rss?token=hunter2"))
    assert "hunter2" not in str(ei.value) and "token=***" in str(ei.value)
