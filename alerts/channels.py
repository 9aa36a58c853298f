"""Alert channels: how a rendered alert (one item or a digest) leaves Raqib.

Every channel has a ``name`` and ``async send(items)``; on any failure ``send`` raises
:class:`~monitor.errors.ChannelError` naming the channel and the cause (the delivery worker
keeps the items in the outbox and retries with back-off). A channel never reports success for a
message that was not accepted.

Channel specs (the ``channels:`` section of alerts.yaml)
--------------------------------------------------------
``type: apprise``   any Apprise URL — ``url`` (required), ``format`` html|markdown|text
                    (default html)::

                        {type: apprise, format: html,
                         url: "mailtos://alerts:${RAQIB_SMTP_PASSWORD}@smtp.example.org?to=desk@example.org"}

``type: webhook``   Raqib's signed JSON webhook — ``url``, the HMAC secret as ``secret_env:
                    RAQIB_WEBHOOK_SECRET`` (a variable name) or ``secret: ${RAQIB_WEBHOOK_SECRET}``,
                    optional ``timeout`` (seconds, default 10). See :class:`SignedWebhookChannel`.

Shorthands, all delivered through Apprise (each also accepts a full ``url``):

``type: email``     ``host``, ``port``, ``user``, ``password``, ``from``, ``to`` (one address or a
                    list), ``secure``: starttls (default, mailtos://), ssl, or none (plain
                    mailto://, e.g. a local relay). Default format html.
``type: telegram``  ``token`` (bot token) and ``chat_id`` (one id or a list) → ``tgram://token/chat``.
                    Default format markdown, which Apprise delivers to Telegram as HTML
                    (``format=html`` is added to tgram:// urls: Telegram's own Markdown cannot
                    escape a ``]`` inside a link label).
``type: slack``     ``url``: the https://hooks.slack.com/… webhook (or a slack:// URL). markdown.
``type: discord``   ``url``: the https://discord.com/api/webhooks/… URL (or discord://). markdown.
``type: json``      ``url``: http(s)://… is posted Apprise's generic JSON (json(s)://). text.

(``type: log`` is handled by :mod:`alerts.delivery`.)

Secrets
-------
Secrets (SMTP passwords, bot tokens, webhook secrets) come only from the environment: any string
value may contain ``${RAQIB_NAME}`` references (also accepted URL-encoded as ``$%7BRAQIB_NAME%7D``),
replaced by :func:`expand_env` when the channel is built; an unset or empty variable raises
ChannelError naming it, and only ``RAQIB_``-prefixed variables may be referenced. A reference
embedded in a URL is percent-encoded when substituted (so a password may hold ``@`` or ``/``);
a value that is exactly one reference is substituted as is (e.g. ``url: ${RAQIB_SLACK_HOOK}``).

Every substituted value is redacted (``***``) from error messages, ``repr``/``str`` of the
channel, and from the records of the ``apprise`` logger (a logging filter Raqib installs).

While an Apprise channel sends, the ``apprise`` logger is switched to DEBUG *without propagation*
so the per-call result carries the low-level cause (``Connection refused``, ``535 Authentication
failed``…) for the ChannelError message; the worker logs that error once, redacted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

import aiohttp
import apprise

from alerts.message import (
    AlertItem,
    markdown_title,
    message_id,
    render_html,
    render_markdown,
    render_text,
    to_json,
)
from monitor.config import CHANNEL_TYPES
from monitor.errors import ChannelError

__all__ = [
    "FORMATS",
    "AppriseChannel",
    "Channel",
    "SignedWebhookChannel",
    "build_channel",
    "expand_env",
    "sign",
    "verify_signature",
]

log = logging.getLogger("raqib.alerts")

FORMATS = ("html", "markdown", "text")
USER_AGENT = "Raqib-Alerts/0.1"
_MIN_SECRET = 4  # shorter values are not worth redacting (and would mangle every message)


@runtime_checkable
class Channel(Protocol):
    name: str

    async def send(self, items: list[AlertItem]) -> None:
        """Deliver one message (one item or a digest); raise ChannelError on any failure."""
        ...


# --------------------------------------------------------------------------- redaction

class _Redactor:
    """Known secret values (and their URL-encoded forms), replaced by *** wherever we print."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s and len(s) >= _MIN_SECRET:
                forms.update({s, quote(s, safe=""), quote(s)})
        self.forms = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for f in self.forms:
            if f in text:
                text = text.replace(f, "***")
        return text


_USERINFO_PW = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


def _safe_url(url: str, redact: _Redactor) -> str:
    """scheme://host[:port]/path — no password, no query, known secrets masked."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
        shown = f"{p.scheme}://{host}{p.path}"
    except ValueError:
        shown = _USERINFO_PW.sub(r"\1:***@", url.split("?", 1)[0])
    return redact(shown)


class _AppriseLogRedaction(logging.Filter):
    """Masks registered secrets in every record of the apprise logger (before any handler,
    including Apprise's own per-call capture, sees it)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._redactor = _Redactor()

    def add(self, redactor: _Redactor) -> None:
        with self._lock:
            forms = set(self._redactor.forms) | set(redactor.forms)
            r = _Redactor()
            r.forms = tuple(sorted(forms, key=len, reverse=True))
            self._redactor = r

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._redactor
        if redactor.forms:
            try:
                msg = record.getMessage()
            except Exception:  # noqa: BLE001 - malformed record: logging reports it
                return True
            clean = redactor(msg)
            if clean != msg:
                record.msg, record.args = clean, None
        return True


_APPRISE_LOGGER = logging.getLogger(apprise.LOGGER_NAME)
_LOG_REDACTION = _AppriseLogRedaction()
_APPRISE_LOGGER.addFilter(_LOG_REDACTION)

_detail_users = 0
_detail_saved: tuple[int, bool] | None = None


@contextlib.contextmanager
def _apprise_details() -> Iterator[None]:
    """DEBUG records reach Apprise's per-call capture, and none propagate to the app's logs
    while we send (the ChannelError carries what matters). Reference-counted for concurrent
    sends on the event loop thread."""
    global _detail_users, _detail_saved
    if _detail_users == 0:
        _detail_saved = (_APPRISE_LOGGER.level, _APPRISE_LOGGER.propagate)
        _APPRISE_LOGGER.setLevel(logging.DEBUG)
        _APPRISE_LOGGER.propagate = False
    _detail_users += 1
    try:
        yield
    finally:
        _detail_users -= 1
        if _detail_users == 0 and _detail_saved is not None:
            _APPRISE_LOGGER.setLevel(_detail_saved[0])
            _APPRISE_LOGGER.propagate = _detail_saved[1]
            _detail_saved = None


# --------------------------------------------------------------------------- environment

_REF = re.compile(r"\$\{([^}]*)\}|\$%7B(.*?)%7D", re.IGNORECASE)
_VAR_NAME = re.compile(r"RAQIB_[A-Z0-9_]+")


def _expand(value: str, env: Mapping[str, str], *, url: bool = False) -> tuple[str, list[str]]:
    """(expanded value, the substituted secret values)."""
    used: list[str] = []

    def lookup(name: str) -> str:
        if not _VAR_NAME.fullmatch(name):
            raise ChannelError(f"environment reference ${{{name}}} is not allowed: only "
                               "${RAQIB_…} variables (upper case) may be referenced")
        got = env.get(name)
        if not got:
            raise ChannelError(f"environment variable {name} is not set (or empty); "
                               f"it is referenced as ${{{name}}}")
        used.append(got)
        return got

    whole = _REF.fullmatch(value.strip())
    if whole:
        return lookup(whole.group(1) if whole.group(1) is not None else whole.group(2)), used

    def sub(m: re.Match[str]) -> str:
        got = lookup(m.group(1) if m.group(1) is not None else m.group(2))
        return quote(got, safe="") if url else got

    return _REF.sub(sub, value), used


def expand_env(value: str, env: Mapping[str, str] = os.environ) -> str:
    """Replace ``${RAQIB_…}`` references with environment values.

    Raises ChannelError naming the variable when it is unset or empty (the message never holds
    a value)."""
    return _expand(value, env)[0]


# --------------------------------------------------------------------------- Apprise

_REASON_HINT = re.compile(r"exception|error|refused|fail|denied|timed? ?out|reset|unreachable|"
                          r"invalid|authenticat|certificate|ssl|tls|\b[45]\d\d\b", re.IGNORECASE)


class AppriseChannel:
    """Email, Telegram, Slack, Discord, generic JSON … through Apprise's async API."""

    def __init__(self, name: str, url: str, fmt: str = "html", *, secrets: Iterable[str] = (),
                 timeout: float = 60.0):
        if fmt not in FORMATS:
            raise ChannelError(f"channel {name!r}: format must be one of {', '.join(FORMATS)}, "
                               f"not {fmt!r}")
        self.name = name
        self.fmt = fmt
        self.timeout = timeout
        self._redact = _Redactor(secrets)
        _LOG_REDACTION.add(self._redact)  # before add(): a failed parse logs the URL
        if fmt == "markdown" and url.lower().startswith("tgram://") and "format=" not in url.lower():
            # Telegram's own Markdown cannot escape ] inside a link label; have Apprise turn our
            # Markdown into HTML (Python-Markdown, every escape honoured) for Telegram instead
            url += ("&" if "?" in url else "?") + "format=html"
        asset = apprise.AppriseAsset(app_id="Raqib", app_desc="Raqib alerts")
        self._apprise = apprise.Apprise(asset=asset)
        if not self._apprise.add(url) or len(self._apprise) != 1:
            raise ChannelError(f"channel {name!r}: Apprise does not understand the url "
                               f"{_safe_url(url, self._redact)!r}")
        plugin = self._apprise[0]
        if getattr(plugin, "protocol", None) == "mailto":
            # Apprise spaces consecutive sends of one plugin 5.5 s apart unless the service sets its
            # own rate; SMTP has no such limit, and a burst of alerts would reach the desk a minute
            # late. Raqib's own throttle/digest rules decide how often a desk is mailed. Chat
            # services keep the rates Apprise tuned for their APIs.
            plugin.request_rate_per_sec = 0
        # Apprise's privacy URL masks passwords/tokens; its query is mostly defaults: drop it
        self._shown = self._redact(self._apprise[0].url(privacy=True).split("?", 1)[0])

    def __repr__(self) -> str:
        return f"AppriseChannel(name={self.name!r}, url={self._shown!r}, fmt={self.fmt!r})"

    __str__ = __repr__

    def _title_is_markdown(self) -> bool:
        """Apprise reads a title in the body's format where the service renders it: blended into
        the body (Telegram) or shown as Markdown (Discord). Email subjects are plain, and Slack
        escapes titles itself."""
        plugin = self._apprise[0]
        if "slack" in str(getattr(plugin, "protocol", "")).lower():
            return False
        formats = plugin._formats() if hasattr(plugin, "_formats") else ()
        return getattr(plugin, "title_maxlen", 1) <= 0 or apprise.NotifyFormat.MARKDOWN in formats

    def _render(self, items: list[AlertItem]) -> tuple[str, str]:
        subject, text = render_text(items)
        if self.fmt == "html":
            return subject, render_html(items)
        if self.fmt == "markdown":
            return (markdown_title(items) if self._title_is_markdown() else subject), render_markdown(items)
        return subject, text

    def _reason(self, result: apprise.AppriseResult) -> str:
        lines: list[str] = []
        for entry in result.logs():
            level = logging.getLevelName(entry.level) if isinstance(entry.level, str) else entry.level
            important = isinstance(level, int) and level >= logging.WARNING
            msg = " ".join(str(entry.message).split())
            if (important or _REASON_HINT.search(msg)) and msg not in lines:
                lines.append(msg[:300])
        reason = "; ".join(lines) or "no reason given"
        return self._redact(reason)[:800]

    async def send(self, items: list[AlertItem]) -> None:
        if not items:
            return
        title, body = self._render(items)
        try:
            with _apprise_details():
                result = await self._apprise.async_notify(
                    body=body, title=title, body_format=self.fmt,
                    timeout=self.timeout, log_level=logging.DEBUG)
        except Exception as e:  # noqa: BLE001 - Apprise should not raise; if it does: failure
            raise ChannelError(f"channel {self.name!r} ({self._shown}): Apprise raised "
                               f"{type(e).__name__}: {self._redact(str(e))}") from None
        try:
            if result:  # AppriseResult: true only for SUCCESS
                return
            reason = self._reason(result)
            status = getattr(getattr(result, "status", None), "name", "FAILURE")
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        raise ChannelError(f"channel {self.name!r} ({self._shown}) failed [{status}]: {reason}")


# --------------------------------------------------------------------------- signed webhook

def sign(secret: str, timestamp: str, body: bytes) -> str:
    """"sha256=" + hex HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str,
                     tolerance: float = 300, now: float | None = None) -> bool:
    """True when `signature` (X-Raqib-Signature) is the HMAC of this timestamp and body under
    `secret`, and the timestamp is within `tolerance` seconds of `now` (replay window; pass
    tolerance=0 or None to skip the check). Constant-time comparison."""
    if not secret or not isinstance(timestamp, str) or not isinstance(signature, str):
        return False
    try:
        ts = float(timestamp.strip())
    except ValueError:
        return False
    if tolerance:
        current = time.time() if now is None else now
        if abs(current - ts) > tolerance:
            return False
    expected = sign(secret, timestamp.strip(), bytes(body))
    given = signature.strip().lower()
    if not given.startswith("sha256="):
        given = "sha256=" + given
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))


class SignedWebhookChannel:
    """POSTs ``to_json(items)`` (UTF-8 JSON) to ``url`` with headers

    * ``X-Raqib-Timestamp``: unix seconds,
    * ``X-Raqib-Delivery``: the item's delivery id, or for a digest an id made from all of them
      (receivers deduplicate on it: delivery is at-least-once),
    * ``X-Raqib-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
      (check it with :func:`verify_signature`).

    Any non-2xx answer (redirects included), timeout or network error raises ChannelError."""

    def __init__(self, name: str, url: str, secret: str, timeout: float = 10.0, *,
                 secrets: Iterable[str] = ()):
        self.name = name
        self._redact = _Redactor([secret, *secrets])
        scheme = urlsplit(url).scheme.lower() if url else ""
        if scheme not in ("http", "https"):
            raise ChannelError(f"channel {name!r}: webhook url must be http(s), got "
                               f"{_safe_url(url or '', self._redact)!r}")
        if not secret:
            raise ChannelError(f"channel {name!r}: webhook secret is empty")
        self.url = url
        self.timeout = float(timeout)
        self._secret = secret
        self._shown = _safe_url(url, self._redact)

    def __repr__(self) -> str:
        return f"SignedWebhookChannel(name={self.name!r}, url={self._shown!r}, secret='***')"

    __str__ = __repr__

    def _fail(self, what: str) -> ChannelError:
        return ChannelError(self._redact(f"channel {self.name!r} ({self._shown}): {what}"))

    async def send(self, items: list[AlertItem]) -> None:
        if not items:
            return
        body = json.dumps(to_json(items), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Raqib-Timestamp": ts,
            "X-Raqib-Delivery": message_id(items),
            "X-Raqib-Signature": sign(self._secret, ts, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                if 200 <= resp.status < 300:
                    return
                try:
                    detail = (await resp.content.read(300)).decode("utf-8", "replace")
                except (TimeoutError, aiohttp.ClientError, UnicodeError):
                    detail = ""
                detail = " ".join(detail.split())
                raise self._fail(f"webhook answered HTTP {resp.status} {resp.reason or ''}".rstrip()
                                 + (f": {detail}" if detail else ""))
        except ChannelError:
            raise
        except TimeoutError:
            raise self._fail(f"webhook timed out after {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise self._fail(f"webhook request failed: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------- factory

_DEFAULT_FORMAT = {"apprise": "html", "email": "html", "telegram": "markdown",
                   "slack": "markdown", "discord": "markdown", "json": "text"}
_TYPES = tuple(t for t in CHANNEL_TYPES if t != "log")  # log: alerts.delivery.LogChannel


def _as_list(v: object) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [s for s in re.split(r"[,\s]+", str(v)) if s]


def _email_url(name: str, spec: dict) -> str:
    host = spec.get("host") or spec.get("smtp")
    if not host:
        raise ChannelError(f"channel {name!r}: email needs a url or a host")
    secure = str(spec.get("secure", "starttls")).lower()
    modes = {"starttls": ("mailtos", "starttls"), "ssl": ("mailtos", "ssl"),
             "none": ("mailto", None), "insecure": ("mailto", None), "false": ("mailto", None)}
    if secure not in modes:
        raise ChannelError(f"channel {name!r}: secure must be starttls, ssl or none")
    scheme, mode = modes[secure]
    user, password = spec.get("user"), spec.get("password")
    auth = ""
    if user:
        auth = quote(str(user), safe="")
        if password:
            auth += ":" + quote(str(password), safe="")
        auth += "@"
    port = f":{int(spec['port'])}" if spec.get("port") else ""
    params = []
    if spec.get("from"):
        params.append("from=" + quote(str(spec["from"]), safe="@"))
    to = _as_list(spec.get("to"))
    if to:
        params.append("to=" + quote(",".join(to), safe="@,"))
    if mode:
        params.append(f"mode={mode}")
    return f"{scheme}://{auth}{host}{port}" + ("?" + "&".join(params) if params else "")


def build_channel(name: str, spec: dict, env: Mapping[str, str] | None = None) -> Channel:
    """A channel from its alerts.yaml spec (see the module docstring); raises ChannelError when
    the spec is wrong or a referenced environment variable is missing."""
    env = os.environ if env is None else env
    kind = str(spec.get("type", "")).strip().lower()
    if kind not in _TYPES:
        raise ChannelError(f"channel {name!r}: unknown type {spec.get('type')!r}; use one of "
                           f"{', '.join(_TYPES)} (or log)")
    secrets: list[str] = []
    values: dict[str, object] = {}
    for key, value in spec.items():
        if key in ("type", "secret_env"):
            values[key] = value
            continue
        if isinstance(value, str):
            try:
                value, used = _expand(value, env, url=(key == "url"))
            except ChannelError as e:
                raise ChannelError(f"channel {name!r}, {key}: {e}") from None
            secrets.extend(used)
        elif isinstance(value, (list, tuple)):
            out = []
            for v in value:
                if isinstance(v, str):
                    v, used = _expand(v, env)
                    secrets.extend(used)
                out.append(v)
            value = out
        values[key] = value

    if kind == "webhook":
        url = values.get("url")
        if not url:
            raise ChannelError(f"channel {name!r}: webhook needs a url")
        secret = values.get("secret")
        if values.get("secret_env"):
            var = str(values["secret_env"])
            if not _VAR_NAME.fullmatch(var):
                raise ChannelError(f"channel {name!r}: secret_env must name a RAQIB_… variable, "
                                   f"not {var!r}")
            secret = env.get(var)
            if not secret:
                raise ChannelError(f"channel {name!r}: environment variable {var} is not set "
                                   "(or empty); it holds the webhook secret")
        if not secret:
            raise ChannelError(f"channel {name!r}: webhook needs secret_env: RAQIB_… "
                               "(the HMAC secret, from the environment)")
        return SignedWebhookChannel(name, str(url), str(secret),
                                    timeout=float(values.get("timeout", 10.0)), secrets=secrets)

    fmt = str(values.get("format", _DEFAULT_FORMAT[kind])).lower()
    url = values.get("url")
    if not url:
        if kind == "email":
            url = _email_url(name, values)
        elif kind == "telegram":
            token, chats = values.get("token"), _as_list(values.get("chat_id") or values.get("chat_ids"))
            if not token or not chats:
                raise ChannelError(f"channel {name!r}: telegram needs token and chat_id "
                                   "(or a tgram:// url)")
            url = f"tgram://{token}/" + "/".join(quote(c, safe="-@") for c in chats)
        else:
            raise ChannelError(f"channel {name!r}: {kind} needs a url")
    url = str(url)
    if kind == "json":
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            url = ("jsons" if scheme == "https" else "json") + url[len(scheme):]
    timeout = float(values.get("timeout", 60.0))
    return AppriseChannel(name, url, fmt, secrets=secrets, timeout=timeout)
