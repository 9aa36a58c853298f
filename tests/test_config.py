"""Configuration: a bad file gives one clear message (file, line, key, problem) and exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg(tmp_path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def test_shipped_config_loads(cfg):
    c = load_config(cfg, env={})
    assert {t.id for t in c.topics} == {"nato", "kursk", "budapest_memorandum"}
    assert len(c.feeds) >= 9
    assert all(f.url.startswith("https://") for f in c.feeds)
    assert c.settings.index.backend == "sqlite"


def test_env_overrides_settings(cfg):
    c = load_config(cfg, env={"RAQIB_FETCH__READ_TIMEOUT": "7.5", "RAQIB_LOG__JSON": "true",
                              "RAQIB_DATA_DIR": "/tmp/x"})
    assert c.settings.fetch.read_timeout == 7.5
    assert c.settings.log.json_format is True
    assert str(c.data_dir) == "/tmp/x"


@pytest.mark.parametrize("file, text, expect", [
    ("feeds.yaml", "feeds:\n  - id: a\n    url: ftp://x.org/rss\n",
     ["feeds.yaml:3: feeds[0].url: ", "not an http(s) URL"]),
    ("feeds.yaml", "feeds:\n  - id: a\n    url: http://a.org/\n  - id: a\n    url: http://b.org/\n",
     ["feeds.yaml:4: feeds[1].id: duplicate feed id 'a'"]),
    ("feeds.yaml", "feeds:\n  - id: a\n   url: [\n", ["feeds.yaml", "invalid YAML"]),
    ("raqib.yaml", "fetch:\n  read_timeout: -1\n", ["raqib.yaml:2: fetch.read_timeout: ", "greater than 0"]),
    ("raqib.yaml", "fetch:\n  read_timout: 3\n", ["fetch.read_timout", "did you mean 'read_timeout'"]),
    ("topics.yaml", "topics:\n  - id: x\n    aliases: []\n", ["topics.yaml", "topics[0].aliases"]),
    ("alerts.yaml", "channels: {}\nsubscriptions:\n  - id: s\n    query: '(الناتو'\n    channels: [x]\n",
     ["alerts.yaml:4: subscriptions[0].query: ", "missing ')'"]),
    ("alerts.yaml", "channels:\n  m: {type: apprise, url: 'mailto://u:hunter2@smtp.example.org'}\n",
     ["alerts.yaml", "environment reference"]),
])
def test_bad_files_name_file_line_key_and_problem(cfg, file, text, expect):
    (cfg / file).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={})
    for part in expect:
        assert part in str(e.value)
    assert "hunter2" not in str(e.value)


def test_cli_exits_2_without_traceback(cfg):
    (cfg / "feeds.yaml").write_text("feeds:\n  - id: Bad Id\n    url: http://a.org/\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "search", "x", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=60)
    assert r.returncode == 2
    assert "feeds.yaml" in r.stderr and "feeds[0].id" in r.stderr
    assert "Traceback" not in r.stderr


def test_subscription_naming_an_unknown_topic_or_source_is_refused(tmp_path):
    from monitor.config import load_config
    from monitor.errors import ConfigError
    from tests.e2e_setup import write_config

    for query, says in [("topic:natoo", "unknown topic 'natoo'"), ("source:nosuch", "unknown source 'nosuch'")]:
        cfg = write_config(tmp_path / query.replace(":", "_"), [("bbc-arabic", "http://127.0.0.1:1/f.xml")],
                           channels={"log": {"type": "log"}},
                           subscriptions=[{"id": "ok", "query": "source:bbc topic:nato", "channels": ["log"]},
                                          {"id": "bad", "query": query, "channels": ["log"]}])
        with pytest.raises(ConfigError) as e:
            load_config(cfg)
        assert "alerts.yaml:" in str(e.value) and "subscriptions[1].query" in str(e.value) and says in str(e.value)


def test_config_errors_speak_the_users_words(tmp_path):
    from monitor.config import load_config
    from monitor.errors import ConfigError
    from tests.e2e_setup import write_config

    cfg = write_config(tmp_path, [])
    cases = [("feeds.yaml", "feeds:\n  - id: a\n    ulr: http://x.org/f\n",
              "feeds.yaml:3: feeds[0].ulr: unknown key 'ulr' — did you mean 'url'?"),
             ("feeds.yaml", "feeds:\n", "feeds.yaml:1: feeds: is empty: a list is needed here"),
             ("raqib.yaml", "fetch:\n  read_timout: 3\n",
              "fetch.read_timout: unknown key 'read_timout' — did you mean"),
             ("raqib.yaml", "fetch:\n  zzz: 3\n", "unknown key 'zzz'; valid keys: user_agent, connect_timeout")]
    for name, text, says in cases:
        saved = (cfg / name).read_text(encoding="utf-8")
        (cfg / name).write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_config(cfg, env={})
        assert says in str(e.value) and "(and" not in str(e.value), str(e.value)
        (cfg / name).write_text(saved, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "once", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "at least one feed is needed" in r.stderr
