"""Configuration: four YAML files validated on load, environment overrides, no secrets on disk.

    raqib.yaml   settings            feeds.yaml   the feeds to poll
    topics.yaml  tracked topics      alerts.yaml  channels and subscriptions

Any setting in raqib.yaml can be overridden by RAQIB_<SECTION>__<KEY> (e.g.
RAQIB_FETCH__READ_TIMEOUT=20, RAQIB_INDEX__BACKEND=opensearch); RAQIB_DATA_DIR sets data_dir.
Secrets (SMTP passwords, tokens, webhook secrets) are written as ${RAQIB_…} references and
read from the environment when a channel is built; a literal one in a file is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.errors import ConfigError

ENV_PREFIX = "RAQIB_"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def _check_id(v: str) -> str:
    if not _ID_RE.match(v):
        raise ValueError("use lower-case letters, digits, '-' and '_'")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class FetchConfig(_Model):
    user_agent: str = "Raqib/0.1 (+https://github.com/raqib/raqib)"
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    total_timeout: float = Field(60.0, gt=0)
    max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0)
    per_host_limit: int = Field(2, ge=1)
    total_limit: int = Field(100, ge=1)
    retries: int = Field(2, ge=0)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    max_inline_retry_after: float = Field(5.0, ge=0)
    min_rate: float = Field(256.0, ge=0, description="bytes/s over rate_window; 0 = off")
    rate_window: float = Field(10.0, gt=0, description="seconds")
    allow_networks: tuple[str, ...] = Field((), description="CIDRs of non-public addresses to allow")

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, v: Any) -> Any:
        from monitor.netpolicy import parse_networks

        values = [v] if isinstance(v, str) else v
        if not isinstance(values, list | tuple):
            return v  # pydantic reports the type error
        return tuple(str(n) for n in parse_networks(values))


class ScheduleConfig(_Model):
    default_interval: float = Field(900, gt=0, description="seconds between polls of a feed")
    min_interval: float = Field(120, gt=0)
    max_interval: float = Field(6 * 3600, gt=0)
    jitter: float = Field(30, ge=0)
    error_backoff_max: float = Field(24 * 3600, gt=0)
    shutdown_grace: float = Field(30, ge=0, le=600)  # seconds polls in flight get on SIGTERM

    @model_validator(mode="after")
    def _bounds(self) -> ScheduleConfig:
        if not self.min_interval <= self.default_interval <= self.max_interval:
            raise ValueError("need min_interval <= default_interval <= max_interval")
        return self


class ParseConfig(_Model):
    workers: int = Field(2, ge=0, description="processes for parsing and tagging; 0 = in-process")
    timeout: float = Field(60, gt=0, le=3600, description="seconds one feed's parse may take")
    memory_mb: int = Field(2048, ge=128, le=1 << 20, description="address-space cap of each parse worker")


class IndexConfig(_Model):
    backend: Literal["sqlite", "elasticsearch", "opensearch"] = "sqlite"
    urls: tuple[str, ...] = ("http://127.0.0.1:9200",)
    verify_certs: bool = True
    ca_certs: str | None = None
    index_prefix: str = "raqib"
    shards: int = Field(1, ge=1)
    replicas: int = Field(1, ge=0)


class AlertSettings(_Model):
    deliver_interval: float = Field(10, gt=0, le=86400)
    retry_base: float = Field(30, gt=0, le=86400)
    retry_max: float = Field(3600, gt=0, le=7 * 86400)
    # Articles published longer ago than this (seconds; "2d", "36h" and "90m" work too) are
    # stored and searchable but do not alert, unless a subscription sets `backfill: true`.
    max_age: float = Field(2 * 86400, gt=0, le=3650 * 86400)
    send_timeout: float = Field(30, gt=0, le=600)  # one send to one channel, then it counts as failed
    breaker_after: int = Field(3, ge=1, le=1000)  # failures in a row that open a channel's breaker

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", v)
            if not m:
                raise ValueError(f"{v!r} is not a duration (use seconds, or e.g. 2d, 36h, 90m)")
            return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return v


class Settings(_Model):
    data_dir: str = "data"
    log: LogSettings = LogSettings()
    fetch: FetchConfig = FetchConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    parse: ParseConfig = ParseConfig()
    index: IndexConfig = IndexConfig()
    alerts: AlertSettings = AlertSettings()


class FeedConfig(_Model):
    id: str
    url: str
    name: str = ""
    language: str = ""
    interval: float | None = Field(None, gt=0)
    enabled: bool = True

    _id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class FeedsFile(_Model):
    feeds: tuple[FeedConfig, ...]

    @model_validator(mode="after")
    def _unique(self) -> FeedsFile:
        _no_duplicates([f.id for f in self.feeds], "feed id")
        _no_duplicates([f.url for f in self.feeds], "feed url")
        return self


class TopicConfig(_Model):
    id: str
    name: str = ""
    aliases: tuple[str, ...] = Field(min_length=1)
    weak_aliases: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    context_window: int = Field(150, ge=1)

    @field_validator("aliases", "weak_aliases", "context", "exclude", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        # YAML reads 1994 as an int; a phrase is text.
        return [str(x) for x in v] if isinstance(v, list) else v

    _id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @model_validator(mode="after")
    def _weak_needs_context(self) -> TopicConfig:
        if self.weak_aliases and not self.context:
            raise ValueError("weak_aliases need at least one context phrase")
        return self


class TopicsFile(_Model):
    topics: tuple[TopicConfig, ...]

    @model_validator(mode="after")
    def _unique(self) -> TopicsFile:
        _no_duplicates([t.id for t in self.topics], "topic id")
        return self


class Throttle(_Model):
    max: int = Field(ge=1)
    per: float = Field(3600, gt=0, description="seconds")


class SubscriptionConfig(_Model):
    id: str
    query: str
    channels: tuple[str, ...] = Field(min_length=1)
    name: str = ""
    throttle: Throttle | None = None
    digest_minutes: float = Field(0, ge=0)
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
        return v


class AlertsFile(_Model):
    channels: dict[str, dict[str, Any]] = {}
    subscriptions: tuple[SubscriptionConfig, ...] = ()

    @field_validator("channels")
    @classmethod
    def _no_literal_secrets(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, spec in v.items():
            if "type" not in spec:
                raise ValueError(f"channel {name!r} needs a type (apprise, webhook, email, …)")
            for key, value in spec.items():
                if not isinstance(value, str):
                    continue
                if key in ("password", "token", "secret") and "${" not in value:
                    raise ValueError(f"channel {name!r}: {key} must come from the environment, "
                                     f"e.g. ${{RAQIB_{name.upper().replace('-', '_')}_{key.upper()}}}")
                if key == "url":
                    pw = urlsplit(value).password
                    if pw and not pw.startswith("${") and not pw.startswith("$%7B"):
                        raise ValueError(f"channel {name!r}: the password in its url must be an "
                                         "environment reference like ${RAQIB_SMTP_PASSWORD}")
        return v

    @model_validator(mode="after")
    def _refs(self) -> AlertsFile:
        _no_duplicates([s.id for s in self.subscriptions], "subscription id")
        for s in self.subscriptions:
            for ch in s.channels:
                if ch not in self.channels:
                    raise ValueError(f"subscription {s.id!r} uses unknown channel {ch!r}")
        return self


def _no_duplicates(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {v!r}")
        seen.add(v)


@dataclass(frozen=True)
class Config:
    settings: Settings
    feeds: tuple[FeedConfig, ...]
    topics: tuple[TopicConfig, ...]
    alerts: AlertsFile
    config_dir: Path
    data_dir: Path = field(default=Path("data"))


def _read_yaml(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line number of a validation error's location, found by walking the YAML node tree."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _validate(model: type[BaseModel], data: Any, path: Path, text: str) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        line = _line_of(text, loc)
        where = (f", line {line}" if line else "") + (f", {key}" if key else "")
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{path}{where}: {msg}{more}") from None


def _coerce(value: str) -> Any:
    return yaml.safe_load(value) if value.strip() else value


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """RAQIB_SECTION__KEY=value pairs as a nested dict (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        cur = out
        for p in path[:-1]:
            cur = cur.setdefault(p, {})
        cur[path[-1]] = _coerce(value)
    if "RAQIB_DATA_DIR" in env:
        out["data_dir"] = env["RAQIB_DATA_DIR"]
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict | None) else v
    return out


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
    merged = _merge(raw or {}, env_overrides(env))
    settings = _validate(Settings, merged, cdir / "raqib.yaml", text)
    feeds = _validate(FeedsFile, *_read_file(cdir / "feeds.yaml"))
    topics = _validate(TopicsFile, *_read_file(cdir / "topics.yaml"))
    alerts_path = cdir / "alerts.yaml"
    alerts = _validate(AlertsFile, *_read_file(alerts_path)) if alerts_path.exists() else AlertsFile()
    ddir = Path(data_dir) if data_dir else Path(settings.data_dir)
    if not ddir.is_absolute() and data_dir is None and "RAQIB_DATA_DIR" not in env:
        ddir = Path.cwd() / ddir
    return Config(settings, feeds.feeds, topics.topics, alerts, cdir, ddir)


def _read_file(path: Path) -> tuple[Any, Path, str]:
    data, text = _read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, path, text
