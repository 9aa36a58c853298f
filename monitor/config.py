"""Configuration: four YAML files validated on load, environment overrides, no secrets on disk.

    raqib.yaml   settings            feeds.yaml   the feeds to poll
    topics.yaml  tracked topics      alerts.yaml  channels and subscriptions

Any setting in raqib.yaml can be overridden by RAQIB_<SECTION>__<KEY> (e.g.
RAQIB_FETCH__READ_TIMEOUT=20, RAQIB_INDEX__BACKEND=opensearch); RAQIB_DATA_DIR sets data_dir.
Secrets (SMTP passwords, tokens, webhook secrets) are written as ${RAQIB_…} references and
read from the environment when a channel is built; a literal one in a file is refused.

Configs fail closed: YAML anchors/aliases (alias bombs), duplicate keys and deep nesting are
refused, every number is finite and bounded, and every error is one line
``file:line: key: problem`` (or ``environment variable RAQIB_…: key: problem``) that never
echoes a secret.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError

ENV_PREFIX = "RAQIB_"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def _check_id(v: str) -> str:
    if not _ID_RE.match(v):
        raise ValueError("use lower-case letters, digits, '-' and '_'")
    return v


class _At(ValueError):
    """A validation problem at `path` below the location pydantic reports (a list index, a
    channel key), so the message can name the exact key and line."""

    def __init__(self, path: tuple[Any, ...], problem: str):
        super().__init__(problem)
        self.path = path
        self.problem = problem


class _Model(BaseModel):
    # allow_inf_nan=False: `.inf` / `.nan` are refused for every float setting
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


DAY = 86400.0


class LogSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class FetchConfig(_Model):
    user_agent: str = Field("Raqib/0.1 (+https://github.com/raqib/raqib)", min_length=1, max_length=512,
                            pattern=r"^[\x20-\x7e]+$")  # one printable ASCII header line
    connect_timeout: float = Field(10.0, gt=0, le=600)
    read_timeout: float = Field(30.0, gt=0, le=600)
    total_timeout: float = Field(60.0, gt=0, le=3600)
    max_bytes: int = Field(10 * 1024 * 1024, gt=0, le=1 << 30)
    max_redirects: int = Field(5, ge=0, le=30)
    per_host_limit: int = Field(2, ge=1, le=100)
    total_limit: int = Field(100, ge=1, le=10_000)
    retries: int = Field(2, ge=0, le=10)
    backoff_base: float = Field(0.5, ge=0, le=3600)
    backoff_max: float = Field(30.0, ge=0, le=DAY)
    max_inline_retry_after: float = Field(5.0, ge=0, le=600)
    min_rate: float = Field(256.0, ge=0, le=1 << 30, description="bytes/s over rate_window; 0 = off")
    rate_window: float = Field(10.0, gt=0, le=3600, description="seconds")
    allow_networks: tuple[str, ...] = Field((), max_length=1000, description="CIDRs of non-public addresses to allow")

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, v: Any) -> Any:
        from monitor.netpolicy import parse_networks

        values = [v] if isinstance(v, str) else v
        if not isinstance(values, list | tuple):
            return v  # pydantic reports the type error
        return tuple(str(n) for n in parse_networks(values))


class ScheduleConfig(_Model):
    default_interval: float = Field(900, gt=0, le=30 * DAY, description="seconds between polls of a feed")
    min_interval: float = Field(120, gt=0, le=30 * DAY)
    max_interval: float = Field(6 * 3600, gt=0, le=30 * DAY)
    jitter: float = Field(30, ge=0, le=DAY)
    error_backoff_max: float = Field(24 * 3600, gt=0, le=30 * DAY)
    shutdown_grace: float = Field(30, ge=0, le=600)  # seconds polls in flight get on SIGTERM

    @model_validator(mode="after")
    def _bounds(self) -> ScheduleConfig:
        if not self.min_interval <= self.default_interval <= self.max_interval:
            raise ValueError("need min_interval <= default_interval <= max_interval")
        return self


class ParseConfig(_Model):
    workers: int = Field(2, ge=0, le=256, description="processes for parsing and tagging; 0 = in-process")
    timeout: float = Field(60, gt=0, le=3600, description="seconds one feed's parse may take")
    memory_mb: int = Field(2048, ge=128, le=1 << 20, description="address-space cap of each parse worker")


class IndexConfig(_Model):
    backend: Literal["sqlite", "elasticsearch", "opensearch"] = "sqlite"
    urls: tuple[str, ...] = ("http://127.0.0.1:9200",)
    verify_certs: bool = True
    ca_certs: str | None = None
    index_prefix: str = "raqib"
    shards: int = Field(1, ge=1, le=1024)
    replicas: int = Field(1, ge=0, le=100)

    @field_validator("urls")
    @classmethod
    def _no_credentials(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(v):
            try:
                netloc = urlsplit(url).netloc
            except ValueError:
                raise _At((i,), "not a valid URL") from None
            if "@" in netloc:
                raise _At((i,), "credentials in the url (not shown) are refused; set RAQIB_INDEX_API_KEY "
                                "or RAQIB_INDEX_USERNAME and RAQIB_INDEX_PASSWORD instead")
        return v


class AlertSettings(_Model):
    deliver_interval: float = Field(10, gt=0, le=86400)
    retry_base: float = Field(30, gt=0, le=86400)
    retry_max: float = Field(3600, gt=0, le=7 * 86400)
    # Articles published longer ago than this (seconds; "2d", "36h" and "90m" work too) are
    # stored and searchable but do not alert, unless a subscription sets `backfill: true`.
    max_age: float = Field(2 * 86400, gt=0, le=3650 * 86400)
    send_timeout: float = Field(30, gt=0, le=600)  # one send to one channel, then it counts as failed

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", v)
            if not m:
                raise ValueError(f"{v!r} is not a duration (use seconds, or e.g. 2d, 36h, 90m)")
            return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return v


class WebSettings(_Model):
    """Where `raqib run` / `raqib web` serve the pages and API. A non-loopback address requires
    API tokens on every request but /healthz (and Raqib refuses to start with no token)."""

    listen: str = "127.0.0.1:8321"
    enabled: bool = True  # `raqib run` serves the web app beside the poller
    require_tokens: bool = False  # also require tokens on a loopback address

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        split_listen(v)
        return v

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def loopback(self) -> bool:
        import ipaddress

        host = self.host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: it may resolve anywhere
            return False

    @property
    def tokens_required(self) -> bool:
        return self.require_tokens or not self.loopback


def split_listen(v: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError with the reason otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", v.strip())
    if not m:
        raise ValueError(f"{v[:80]!r} is not host:port (e.g. 127.0.0.1:8321 or [::1]:8321)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return host, int(port)


class RetentionSettings(_Model):
    days: float = Field(0, ge=0, le=100 * 365)  # 0 keeps articles forever


class Settings(_Model):
    data_dir: str = "data"
    retention: RetentionSettings = RetentionSettings()
    log: LogSettings = LogSettings()
    fetch: FetchConfig = FetchConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    parse: ParseConfig = ParseConfig()
    index: IndexConfig = IndexConfig()
    alerts: AlertSettings = AlertSettings()
    web: WebSettings = WebSettings()


def _shown_url(url: str) -> str:
    """scheme://host/path of a URL for an error message: never user-info, query or fragment."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
    except ValueError:
        return "(unparseable url)"
    return f"{p.scheme}://{host}{p.path}"[:200]


def _check_url_text(v: str) -> None:
    if len(v) > 2048:
        raise ValueError("url is longer than 2048 characters")
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in v):
        raise ValueError("url contains whitespace or control characters")


class FeedConfig(_Model):
    id: str = Field(max_length=100)
    url: str
    name: str = Field("", max_length=500)
    language: str = Field("", max_length=35)
    interval: float | None = Field(None, gt=0, le=30 * DAY)
    enabled: bool = True

    _id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from monitor.redact import check_feed_url  # never echoes credentials

        _check_url_text(v)
        try:
            port = urlsplit(v).port  # ValueError for a port out of range
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("url is not a valid URL (bad host or port)")
        return check_feed_url(v)


class FeedsFile(_Model):
    # May be empty: feeds can also be added with the CLI, the API or the pages (the database).
    feeds: tuple[FeedConfig, ...] = Field((), max_length=100_000)

    @model_validator(mode="after")
    def _unique(self) -> FeedsFile:
        _no_duplicates([f.id for f in self.feeds], "feed id", "feeds", "id")
        _no_duplicates([f.url for f in self.feeds], "feed url", "feeds", "url")
        return self


_PHRASE_MAX = 200


def _phrase_ok(field: str, i: int, phrase: str) -> str:
    from monitor.arabic import WORD_RE, normalize

    if len(phrase) > _PHRASE_MAX:
        raise _At((i,), f"phrase is longer than {_PHRASE_MAX} characters")
    if not WORD_RE.search(normalize(phrase)):
        raise _At((i,), f"{phrase.strip()[:40]!r} has no letters or digits (diacritics, tatweel and "
                        "punctuation are ignored when matching); an empty phrase would match everywhere")
    return phrase


class TopicConfig(_Model):
    id: str = Field(max_length=100)
    name: str = Field("", max_length=500)
    aliases: tuple[str, ...] = Field(min_length=1, max_length=10_000)
    weak_aliases: tuple[str, ...] = Field((), max_length=10_000)
    context: tuple[str, ...] = Field((), max_length=10_000)
    exclude: tuple[str, ...] = Field((), max_length=10_000)
    context_window: int = Field(150, ge=1, le=10_000)

    @field_validator("aliases", "weak_aliases", "context", "exclude", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for i, x in enumerate(v):
            # YAML reads 1994 as an int (fine: a phrase is text), but `- ` as null (which would
            # become the word "None") and yes/no as booleans: refuse those rather than guess
            if isinstance(x, bool) or not isinstance(x, str | int):
                raise _At((i,), "each phrase must be text; an empty entry, a list, or a value YAML "
                                "reads as null, yes/no, a date or a float must be written in quotes")
            out.append(str(x))
        return out

    @field_validator("aliases", "weak_aliases", "context", "exclude")
    @classmethod
    def _words(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return tuple(_phrase_ok(info.field_name or "", i, p) for i, p in enumerate(v))

    _id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @model_validator(mode="after")
    def _weak_needs_context(self) -> TopicConfig:
        if self.weak_aliases and not self.context:
            raise ValueError("weak_aliases need at least one context phrase")
        return self


class TopicsFile(_Model):
    topics: tuple[TopicConfig, ...] = Field(max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> TopicsFile:
        _no_duplicates([t.id for t in self.topics], "topic id", "topics", "id")
        return self


class Throttle(_Model):
    max: int = Field(ge=1, le=1_000_000)
    per: float = Field(3600, gt=0, le=30 * DAY, description="seconds")


class SubscriptionConfig(_Model):
    id: str = Field(max_length=100)
    query: str = Field(max_length=4096)
    channels: tuple[str, ...] = Field(min_length=1, max_length=100)
    name: str = Field("", max_length=500)
    throttle: Throttle | None = None
    digest_minutes: float = Field(0, ge=0, le=7 * 24 * 60)
    backfill: bool = False  # alert on back catalogue and on articles older than alerts.max_age too

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        from monitor.errors import QueryError
        from monitor.query import parse  # one parser for search and alerts

        try:
            parse(v)
        except QueryError as e:
            raise ValueError(str(e)) from None
        except RecursionError:
            raise ValueError("the query is nested too deeply") from None
        except Exception as e:  # noqa: BLE001 - any parser failure is this file's error, not a crash
            raise ValueError(f"the query cannot be parsed ({type(e).__name__})") from None
        return v


# ------------------------------------------------------------------ channels and literal secrets

CHANNEL_TYPES = ("apprise", "webhook", "email", "telegram", "slack", "discord", "json", "log")
CHANNEL_FORMATS = ("html", "markdown", "text")
_SECRET_KEYS = frozenset({"password", "token", "secret", "api_key", "apikey", "access_token",
                          "bot_token", "webhook_token", "key"})
_ENV_REF = re.compile(r"\$\{([^}]*)\}|\$%7B(.*?)%7D", re.IGNORECASE)
_ENV_NAME = re.compile(r"RAQIB_[A-Z0-9_]+")
_HOLE = "raqibenvref"  # stands for an environment reference while a url is inspected
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*)://([^/?#]*)", re.IGNORECASE)
_TELEGRAM_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:bot)?\d{3,}:[A-Za-z0-9_\-]{10,}")
_SLACK_TOKEN = re.compile(r"xox[a-z]-[A-Za-z0-9\-]+", re.IGNORECASE)
_SLACK_HOOK = re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/([^?#]*)", re.IGNORECASE)
_DISCORD_HOOK = re.compile(r"discord(?:app)?\.com/api/webhooks/([^?#]*)", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"[?&;]([a-z_\-]*(?:token|key|secret|pass|passwd|password|pwd|pw|auth|"
                           r"signature|sig|apikey|code|hash|webhook))=([^&#;]*)", re.IGNORECASE)


def _literal(part: str) -> bool:
    """True when a piece of a url is literal text rather than (only) environment references."""
    return bool(unquote(part).replace(_HOLE, "").strip("/ "))


_PUBLIC_IDS = frozenset({"webhook_id"})  # marked private by Apprise, but only an id: the token is the secret


def _apprise_private(url: str) -> str | None:
    """The first token Apprise itself marks private (passwords, tokens, keys) given literally in
    `url`, for every service Apprise knows; None when all come from the environment."""
    import logging

    try:
        from apprise import plugins
        from apprise.manager_plugins import NotificationManager
    except ImportError:  # pragma: no cover - apprise is a dependency
        return None
    lg = logging.getLogger("apprise")
    saved = lg.disabled
    lg.disabled = True  # a failed parse logs the url: keep it out of the logs
    try:
        parsed = plugins.url_to_dict(url)
        schema = parsed.get("schema") if parsed else None
        manager = NotificationManager()
        plugin = manager[schema] if schema and schema in manager else None
    except Exception:  # noqa: BLE001 - an unparseable url is reported by the regex checks or at send
        return None
    finally:
        lg.disabled = saved
    if not parsed or plugin is None:
        return None
    spec = {**getattr(plugin, "template_tokens", {}), **getattr(plugin, "template_args", {})}
    for name, meta in spec.items():
        if not isinstance(meta, dict) or not meta.get("private") or name in _PUBLIC_IDS:
            continue
        for key in {name, meta.get("map_to") or name}:
            value = parsed.get(key)
            if isinstance(value, str) and value and _literal(value):
                return f"a literal {meta.get('name') or key}"
    return None


def literal_secret(value: str) -> str | None:
    """What literal secret `value` (a channel setting, usually a url) holds, or None.

    Covers every place Apprise takes one: url user-info passwords, Telegram bot tokens
    (``tgram://123:ABC…``, ``bot123:ABC…``), Slack (``hooks.slack.com/services/…``, ``slack://``,
    ``xox…-`` tokens), Discord (``/api/webhooks/<id>/<token>``, ``discord://id/token``),
    secret-looking query keys (``?token=``, ``apikey=``, ``password=`` …) and any token a
    service's Apprise plugin marks private. The answer never contains the secret itself."""
    text = _ENV_REF.sub(_HOLE, value)
    m = _SCHEME.match(text.strip())
    if m:
        scheme, netloc = m.group(1).lower(), m.group(2)
        userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
        if ":" in userinfo and _literal(userinfo.split(":", 1)[1]):
            return "a literal password in the url's user-info"
        rest = text.strip()[len(scheme) + 3:]
        if scheme == "slack":
            after_user = rest.split("@", 1)[1] if "@" in rest.split("/", 1)[0] else rest
            parts = re.split(r"[/?#]", after_user)
            for p in parts[:4]:
                if p and not p.startswith(("#", "@", "%23", "%40")) and "=" not in p and _literal(p):
                    return "a literal Slack token"
        if scheme == "discord":
            parts = [p for p in re.split(r"[/?#]", rest.split("@", 1)[-1]) if p]
            if len(parts) >= 2 and _literal(parts[1]):
                return "a literal Discord webhook token"
    if _TELEGRAM_TOKEN.search(text):
        return "a literal Telegram bot token"
    if _SLACK_TOKEN.search(text):
        return "a literal Slack token"
    for rx, what in ((_SLACK_HOOK, "Slack webhook"), (_DISCORD_HOOK, "Discord webhook")):
        hit = rx.search(text)
        if hit and any(_literal(p) for p in hit.group(1).split("/")[1:] if p):
            return f"a literal {what} token"
    for hit in _SECRET_QUERY.finditer(text):
        if _literal(hit.group(2)):
            return f"a literal secret in the url's {hit.group(1)}= parameter"
    if m and m.group(1).lower() not in ("http", "https"):
        return _apprise_private(text)
    return None


def _check_channel_value(key: str, value: Any) -> None:
    if isinstance(value, str):
        if len(value) > 4096:
            raise _At((key,), "value is longer than 4096 characters")
        for ref in _ENV_REF.finditer(value):
            name = ref.group(1) if ref.group(1) is not None else ref.group(2)
            if not _ENV_NAME.fullmatch(name):
                raise _At((key,), f"environment reference ${{{name[:40]}}} is not allowed: only "
                                  "${RAQIB_…} variables (upper case) may be referenced")
        hint = ("secrets come only from the environment: write an environment reference such as "
                "${RAQIB_SMTP_PASSWORD} in its place")
        if key in _SECRET_KEYS and _literal(_ENV_REF.sub(_HOLE, value)):
            raise _At((key,), f"a literal {key} (not shown) is refused; {hint}")
        found = literal_secret(value)
        if found:
            raise _At((key,), f"{found} (not shown) is refused; {hint} (one reference may hold "
                              "the whole url)")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, str | int | float | bool) or isinstance(v, float) and not math.isfinite(v):
                raise _At((key, i), "expected a list of plain values")
            if isinstance(v, str):
                try:
                    _check_channel_value(key, v)
                except _At as e:
                    raise _At((key, i), e.problem) from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise _At((key,), "must be a finite number")
    elif value is not None and not isinstance(value, int | float | bool):
        raise _At((key,), "expected a plain value (text, number, yes/no) or a list of them")


def _number(spec: dict[str, Any], key: str, lo: float, hi: float, integer: bool = False) -> None:
    if key not in spec:
        return
    v = spec[key]
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not (lo <= v <= hi) or (isinstance(v, float) and not math.isfinite(v)):
        kind = "a whole number" if integer else "a number"
        raise _At((key,), f"must be {kind} from {lo:g} to {hi:g}")


def _check_channel(spec: dict[str, Any]) -> dict[str, Any]:
    """One channel spec: a known type, sane numbers, no literal secret anywhere."""
    if "type" not in spec:
        raise ValueError(f"a channel needs a type ({', '.join(CHANNEL_TYPES)})")
    kind = spec["type"]
    if kind not in CHANNEL_TYPES:
        shown = repr(kind)[:40] if isinstance(kind, str) else type(kind).__name__
        raise _At(("type",), f"unknown channel type {shown}; use one of {', '.join(CHANNEL_TYPES)}")
    if "format" in spec and str(spec["format"]).lower() not in CHANNEL_FORMATS:
        raise _At(("format",), f"format must be one of {', '.join(CHANNEL_FORMATS)}")
    if "secret_env" in spec and not (isinstance(spec["secret_env"], str) and _ENV_NAME.fullmatch(spec["secret_env"])):
        raise _At(("secret_env",), "secret_env must name a RAQIB_… environment variable (upper case), "
                                   "not hold the secret (not shown)")
    _number(spec, "timeout", 0.001, 600)
    _number(spec, "port", 1, 65535, integer=True)
    for key, value in spec.items():
        if not isinstance(key, str):
            raise _At((), "channel settings must have text keys")
        _check_channel_value(key, value)
    return spec


def _check_channel_name(name: str) -> str:
    if not name or len(name) > 100 or any(unicodedata.category(c)[0] in "CZ" for c in name):
        raise ValueError(f"channel name {name[:40]!r} must be 1-100 characters without spaces "
                         "or control characters")
    return name


class AlertsFile(_Model):
    channels: dict[Annotated[str, AfterValidator(_check_channel_name)],
                   Annotated[dict[str, Any], AfterValidator(_check_channel)]] = {}
    subscriptions: tuple[SubscriptionConfig, ...] = Field((), max_length=100_000)

    @model_validator(mode="after")
    def _refs(self) -> AlertsFile:
        _no_duplicates([s.id for s in self.subscriptions], "subscription id", "subscriptions", "id")
        for i, s in enumerate(self.subscriptions):
            for j, ch in enumerate(s.channels):
                if ch not in self.channels:
                    raise _At(("subscriptions", i, "channels", j),
                              f"unknown channel {ch[:40]!r}; channels in this file: "
                              f"{', '.join(sorted(self.channels)) or '(none)'}")
        return self



def _no_duplicates(values: list[str], what: str, section: str = "", key: str = "") -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            shown = v if what != "feed url" else _shown_url(v)
            raise _At((section, i, key) if section else (), f"duplicate {what} {shown[:80]!r}")
        seen.add(v)


@dataclass(frozen=True)
class Config:
    settings: Settings
    feeds: tuple[FeedConfig, ...]
    topics: tuple[TopicConfig, ...]
    alerts: AlertsFile
    config_dir: Path
    data_dir: Path = field(default=Path("data"))


# ------------------------------------------------------------------ YAML, safely

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32


class _Loader(yaml.SafeLoader):
    """SafeLoader that fails closed: anchors and aliases are refused (an alias bomb expands a
    kilobyte into gigabytes), so are duplicate keys (YAML would silently keep the last),
    nesting deeper than MAX_DEPTH, and values Python cannot build (a 5,000-digit integer,
    month 13) — each as a YAML error with the line it is on."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed; "
                                              "write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "YAML anchors (&name) are not allowed; "
                                              "write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a key must be a plain value", key_node.start_mark) from None
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{_one_line(str(key))[:80]}: duplicate key (first on line {first})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read value: {_one_line(str(e))[:120]}", node.start_mark) from None


def _one_line(text: str) -> str:
    """Collapse newlines and control characters so an error stays one line."""
    return " ".join("".join(c if unicodedata.category(c)[0] != "C" else " " for c in text).split())


def _yaml(text: str) -> Any:
    """Parse with _Loader; raises yaml.YAMLError (with a mark when there is a line to name)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> tuple[int | None, str]:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return (mark.line + 1 if mark else None), _one_line(problem)[:300]


def _read_yaml(path: Path) -> tuple[Any, str]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read: not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    try:
        return _yaml(text), text
    except yaml.YAMLError as e:
        line, problem = _yaml_problem(e)
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}" if line else
                          f"{path}: invalid YAML: {problem}") from None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line number of a validation error's location, found by walking the YAML node tree."""
    if not text:
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys valid at `loc` inside `model` (following nested models, lists and optionals)."""
    import typing

    def inner(tp: Any) -> type[BaseModel] | None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        for arg in typing.get_args(tp):
            found = inner(arg)
            if found is not None:
                return found
        return None

    cur: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or cur is None:
            continue
        field = cur.model_fields.get(str(part))
        cur = inner(field.annotation) if field else None
    return list(cur.model_fields) if cur is not None else []


def _error_at(e: ValidationError, model: type[BaseModel] | None = None) -> tuple[tuple[Any, ...], str, str]:
    """(location, dotted key, problem) of a validation error's first entry."""
    errors = e.errors()
    # A misspelt key shows up as an unknown key plus a missing one: name the typo first.
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "[key]"))))
    cause = (err.get("ctx") or {}).get("error")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and loc and model is not None:
        import difflib

        near = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1, cutoff=0.6)
        msg = f"unknown key {str(loc[-1])[:40]!r}" + (f" — did you mean {near[0]!r}?" if near else
                                                      f"; valid keys: {', '.join(_fields_at(model, loc[:-1]))}")
        errors = [x for x in errors if not (x["type"] == "missing" and near and x["loc"][-1] == near[0])]
    elif err["type"] in ("tuple_type", "list_type") and err.get("input") is None:
        msg = "is empty: a list is needed here"
    if isinstance(cause, _At):
        loc, msg = loc + cause.path, cause.problem
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return loc, _one_line(key)[:120], _one_line(msg)[:400] + more


def _validate(model: type[BaseModel], data: Any, path: Path, text: str) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        loc, key, msg = _error_at(e, model)
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else f"{path}"
        raise ConfigError(f"{where}: {key}: {msg}" if key else f"{where}: {msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


MAX_ENV_VALUE = 64 * 1024


def _coerce(name: str, value: str) -> Any:
    """An override's value read as a YAML scalar (or a flat list, e.g. RAQIB_INDEX__URLS)."""
    if not value.strip():
        return value
    if len(value) > MAX_ENV_VALUE:
        raise ConfigError(f"environment variable {name}: value is longer than {MAX_ENV_VALUE} characters")
    try:
        got = _yaml(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"environment variable {name}: not a valid value: {_yaml_problem(e)[1]}") from None
    if isinstance(got, dict):
        raise ConfigError(f"environment variable {name}: a mapping cannot be set in one variable; "
                          "set each key as its own RAQIB_SECTION__KEY variable")
    if isinstance(got, list) and any(isinstance(x, list | dict) for x in got):
        raise ConfigError(f"environment variable {name}: only a flat list of values is allowed")
    return got


def _env_settings(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """(RAQIB_SECTION__KEY overrides as a nested dict, {key path: variable name})."""
    out: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(name[len(ENV_PREFIX):].lower().split("__"))
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty part in the name; "
                              "use RAQIB_SECTION__KEY")
        value = _coerce(name, env[name])
        cur = out
        for i, p in enumerate(path[:-1]):
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment variable {name}: conflicts with {sources[path[:i + 1]]}")
            cur = nxt
        if isinstance(cur.get(path[-1]), dict):
            other = next(v for k, v in sources.items() if k[:len(path)] == path)
            raise ConfigError(f"environment variable {name}: conflicts with {other}")
        cur[path[-1]] = value
        sources[path] = name
    if "RAQIB_DATA_DIR" in env:
        out["data_dir"] = env["RAQIB_DATA_DIR"]
        sources[("data_dir",)] = "RAQIB_DATA_DIR"
    return out, sources


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """RAQIB_SECTION__KEY=value pairs as a nested dict (values read as YAML scalars)."""
    return _env_settings(env)[0]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict | None) else v
    return out


def _settings(raw: Any, path: Path, text: str, env: Mapping[str, str]) -> Settings:
    """raqib.yaml merged with the environment; an error in an overridden key names the variable."""
    over, sources = _env_settings(env)
    try:
        return Settings.model_validate(_merge(raw or {}, over))
    except ValidationError as e:
        loc, key, msg = _error_at(e, Settings)
        for src, var in sources.items():
            n = min(len(src), len(loc))
            if n and src[:n] == loc[:n]:
                raise ConfigError(f"environment variable {var}: {key}: {msg}") from None
        return _validate(Settings, raw, path, text)  # the file's own error, with its line
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def load_config(config_dir: str | Path, data_dir: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load and validate all four files; raises ConfigError naming file, line, key and problem."""
    env = os.environ if env is None else env
    cdir = Path(config_dir)
    if not cdir.is_dir():
        raise ConfigError(f"{cdir}: configuration directory not found")
    raw, text = _read_yaml(cdir / "raqib.yaml") if (cdir / "raqib.yaml").exists() else ({}, "")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{cdir / 'raqib.yaml'}: expected a mapping of settings")
    settings = _settings(raw, cdir / "raqib.yaml", text, env)
    feeds = _validate(FeedsFile, *_read_file(cdir / "feeds.yaml"))
    topics = _validate(TopicsFile, *_read_file(cdir / "topics.yaml"))
    alerts_path = cdir / "alerts.yaml"
    alerts = _validate(AlertsFile, *_read_file(alerts_path)) if alerts_path.exists() else AlertsFile()
    _check_subscription_names(alerts, feeds.feeds, topics.topics, alerts_path)
    ddir = Path(data_dir) if data_dir else Path(settings.data_dir)
    if not ddir.is_absolute() and data_dir is None and "RAQIB_DATA_DIR" not in env:
        ddir = Path.cwd() / ddir
    return Config(settings, feeds.feeds, topics.topics, alerts, cdir, ddir)


def _check_subscription_names(alerts: AlertsFile, feeds, topics, path: Path) -> None:
    """A subscription naming a topic or source that does not exist would be saved and never
    fire: refuse it at load, with the valid names."""
    from monitor.errors import QueryError
    from monitor.query import parse, validate

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for i, sub in enumerate(alerts.subscriptions):
        try:
            validate(parse(sub.query), [t.id for t in topics], [f.id for f in feeds])
        except QueryError as e:
            line = _line_of(text, ("subscriptions", i, "query"))
            raise ConfigError(f"{path}:{line}: subscriptions[{i}].query: {_one_line(str(e))}" if line else
                              f"{path}: subscriptions[{i}].query: {_one_line(str(e))}") from None


def _read_file(path: Path) -> tuple[Any, Path, str]:
    data, text = _read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, path, text
