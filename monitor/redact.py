"""Secrets out of logs and error messages: one place that knows what a secret in a URL looks like.

Covers user-info (`scheme://user:pw@host`), token-bearing paths (Telegram `/bot<token>/`, Slack
`/services/T…/B…/…`, Discord `/api/webhooks/<id>/<token>`, Apprise `tgram://`, `slack://`,
`discord://` URLs), query parameters with secret-looking names (`token`, `key`, `secret`,
`password`, `sig`, `signature`, `api_key`, `access_token`, …) and `Bearer`/`Basic` credentials.
The patterns work on free text, because a third-party library logs a path without its host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

# user-info: anything between "//" and "@" before the first / ? # or whitespace.
_USERINFO = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/?#@\s\"'<>]+)@")
_TELEGRAM_PATH = re.compile(r"(?P<pre>/bot)\d+:[A-Za-z0-9_\-]+")
_TELEGRAM_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_\-]{20,}")
_SLACK_PATH = re.compile(r"(?P<pre>/services/)[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+")
_DISCORD_PATH = re.compile(r"(?P<pre>/api/webhooks/)\d+/[A-Za-z0-9_\-.]+")
# Apprise URLs whose "host" and path are tokens: keep the scheme, hide the rest.
_APPRISE_TOKENS = re.compile(r"(?P<pre>\b(?:tgram|slack|discord|msteams|mmost|rocket|pover|pbul|"
                             r"gotify|ntfys?|matrixs?|zulip|ifttt|join|signal|opsgenie|pagerduty)://)"
                             r"[^\s?#\"'<>]+", re.IGNORECASE)
_SECRET_KEY = (r"(?:[A-Za-z0-9]*[_.\-])?(?:token|key|secret|password|passwd|pwd|pass|sig|signature|"
               r"apikey|auth|authorization|credentials?|session|sid|code)")
_QUERY = re.compile(r"(?P<pre>[?&;](?i:" + _SECRET_KEY + r")=)[^&#\s\"'<>]*")
_AUTH_HEADER = re.compile(r"(?P<pre>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)

_RULES = (_USERINFO, _TELEGRAM_PATH, _SLACK_PATH, _DISCORD_PATH, _APPRISE_TOKENS, _TELEGRAM_TOKEN,
          _QUERY, _AUTH_HEADER)


def _mask(m: re.Match[str]) -> str:
    pre = m.groupdict().get("pre") or ""
    suffix = "@" if m.re is _USERINFO else ""
    return pre + MASK + suffix


def redact_text(text: str) -> str:
    """`text` with every URL secret Raqib knows the shape of replaced by `***`."""
    if not text:
        return text
    for rule in _RULES:
        text = rule.sub(_mask, text)
    return text


def redact_url(url: str) -> str:
    """A URL safe to show: user-info, token paths and secret query values become `***`."""
    return redact_text(url)


def has_credentials(url: str) -> bool:
    """True if the URL carries user-info (`user:pw@` or `token@`) in its authority."""
    return _USERINFO.match(url.strip()) is not None


def check_feed_url(url: str) -> str:
    """Validate a feed URL from feeds.yaml: http(s), a host, no credentials.

    Raises ValueError with a message that never contains the secret parts of `url`.
    """
    shown = redact_url(url)
    if has_credentials(url):
        raise ValueError(f"{shown!r}: feed URLs must not contain credentials (user:password@); "
                         "Raqib would not send them")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as e:
        raise ValueError(f"{shown!r} is not a valid URL ({e})") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValueError(f"{shown!r} is not an http(s) URL")
    return url
