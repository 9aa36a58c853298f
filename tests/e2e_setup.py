"""Builds a throw-away configuration directory pointing Raqib at local test servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

FAST_SETTINGS = {
    "fetch": {"connect_timeout": 2, "read_timeout": 1.5, "total_timeout": 4, "max_bytes": 1_000_000,
              "max_redirects": 3, "retries": 1, "backoff_base": 0.05, "backoff_max": 0.2,
              "max_inline_retry_after": 1,
              "allow_networks": ["127.0.0.0/8"]},  # the local test servers; default refuses loopback
    "schedule": {"default_interval": 600, "min_interval": 60, "max_interval": 3600, "jitter": 0},
    "parse": {"workers": 0},
    "alerts": {"deliver_interval": 0.5, "retry_base": 0.2, "retry_max": 1},
    # `raqib run` would serve on 127.0.0.1:8321: tests that want the web app set their own port
    "web": {"enabled": False},
}


def write_config(tmp: Path, feeds: list[tuple[str, str]], *, channels: dict | None = None,
                 subscriptions: list[dict] | None = None, settings: dict | None = None) -> Path:
    d = tmp / "config"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "topics.yaml", d / "topics.yaml")
    merged = {k: dict(v) for k, v in FAST_SETTINGS.items()}
    for k, v in (settings or {}).items():
        merged.setdefault(k, {}).update(v)
    merged["data_dir"] = str(tmp / "data")
    (d / "raqib.yaml").write_text(yaml.safe_dump(merged), encoding="utf-8")
    (d / "feeds.yaml").write_text(yaml.safe_dump(
        {"feeds": [{"id": fid, "url": url, "language": "ar"} for fid, url in feeds]},
        allow_unicode=True), encoding="utf-8")
    (d / "alerts.yaml").write_text(yaml.safe_dump(
        {"channels": channels or {}, "subscriptions": subscriptions or []}, allow_unicode=True),
        encoding="utf-8")
    return d
