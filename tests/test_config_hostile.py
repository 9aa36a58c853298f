"""Configs that fail closed (issue 7, item 5): each broken config is one ConfigError line
``file:line: key: problem`` (or naming the environment variable), never a traceback, a hang,
a silently wrong value or an echoed secret."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ONE_LINE = re.compile(r"^[^\n]+$")


@pytest.fixture
def cfg(tmp_path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def fails(cfg: Path, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env=env or {})
    msg = str(e.value)
    assert ONE_LINE.match(msg), msg
    return msg


# --------------------------------------------------------------------------- YAML itself

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


def test_alias_bomb_in_aliases_is_refused_at_its_line(cfg):
    text = ("topics:\n  - id: bomb\n    aliases: &a0 [كورسك, كورسك, كورسك, كورسك, كورسك, كورسك, كورسك]\n"
            + "".join(f"    weak_aliases: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
                      for i in range(1, 2)))
    (cfg / "topics.yaml").write_text(text, encoding="utf-8")
    msg = fails(cfg)
    assert msg.startswith(f"{cfg / 'topics.yaml'}:3: invalid YAML: ") and "anchors" in msg


@pytest.mark.parametrize("file", ["raqib.yaml", "feeds.yaml", "topics.yaml", "alerts.yaml"])
def test_billion_laughs_refused_in_every_file(cfg, file):
    (cfg / file).write_text(ALIAS_BOMB, encoding="utf-8")
    msg = fails(cfg)
    assert f"{file}:1: invalid YAML:" in msg and "not allowed" in msg


def test_alias_without_anchor_line_is_named(cfg):
    (cfg / "raqib.yaml").write_text("fetch:\n  retries: 2\nschedule:\n  jitter: *x\n", encoding="utf-8")
    msg = fails(cfg)
    assert "raqib.yaml:4: invalid YAML:" in msg


@pytest.mark.parametrize("file, text, line, key", [
    ("raqib.yaml", "fetch:\n  retries: 1\n  retries: 9\n", 3, "retries"),
    ("feeds.yaml", "feeds:\n  - id: a\n    url: http://a.org/\n    url: http://b.org/\n", 4, "url"),
    ("alerts.yaml", "channels:\n  log: {type: log}\n  log: {type: log}\n", 3, "log"),
    ("topics.yaml", "topics: []\ntopics: []\n", 2, "topics"),
])
def test_duplicate_keys_refused_with_file_line_and_key(cfg, file, text, line, key):
    (cfg / file).write_text(text, encoding="utf-8")
    msg = fails(cfg)
    assert f"{file}:{line}: invalid YAML: {key}: duplicate key" in msg


@pytest.mark.parametrize("text", [
    "fetch: " + "[" * 5000 + "]" * 5000 + "\n",
    "fetch: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "fetch:\n  retries: " + "9" * 5000 + "\n",
    "data_dir: 2024-13-45\n",
    "fetch: !!python/object/apply:os.system [echo]\n",
    "\ufeff\x00\x01",
])
def test_unreadable_yaml_is_a_config_error(cfg, text):
    (cfg / "raqib.yaml").write_text(text, encoding="utf-8")
    assert "raqib.yaml" in fails(cfg)


def test_non_utf8_file(cfg):
    (cfg / "feeds.yaml").write_bytes(b"feeds:\n  - id: \xff\xfe\n")
    assert "feeds.yaml: cannot read: not UTF-8" in fails(cfg)


# --------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("text, key", [
    ("fetch:\n  total_timeout: .inf\n", "fetch.total_timeout"),
    ("fetch:\n  total_timeout: .nan\n", "fetch.total_timeout"),
    ("fetch:\n  read_timeout: 1e300\n", "fetch.read_timeout"),
    ("fetch:\n  max_bytes: 100000000000000\n", "fetch.max_bytes"),
    ("fetch:\n  retries: 1000000\n", "fetch.retries"),
    ("fetch:\n  per_host_limit: -3\n", "fetch.per_host_limit"),
    ("fetch:\n  user_agent: \"Raqib\\r\\nX-Evil: 1\"\n", "fetch.user_agent"),
    ("schedule:\n  max_interval: 1e300\n", "schedule.max_interval"),
    ("schedule:\n  jitter: -1\n", "schedule.jitter"),
    ("parse:\n  workers: 100000\n", "parse.workers"),
    ("alerts:\n  retry_max: .inf\n", "alerts.retry_max"),
])
def test_settings_numbers_are_finite_and_bounded(cfg, text, key):
    (cfg / "raqib.yaml").write_text(text, encoding="utf-8")
    msg = fails(cfg)
    assert re.search(rf"raqib\.yaml:2: {re.escape(key)}: ", msg), msg


@pytest.mark.parametrize("file, text, key", [
    ("feeds.yaml", "feeds:\n  - id: a\n    url: http://a.org/\n    interval: 1e300\n", "feeds[0].interval"),
    ("topics.yaml", "topics:\n  - id: t\n    aliases: [كورسك]\n    context_window: .inf\n",
     "topics[0].context_window"),
    ("alerts.yaml", "channels: {log: {type: log}}\nsubscriptions:\n  - id: s\n    query: كورسك\n"
                    "    channels: [log]\n    digest_minutes: -5\n", "subscriptions[0].digest_minutes"),
    ("alerts.yaml", "channels: {log: {type: log}}\nsubscriptions:\n  - id: s\n    query: كورسك\n"
                    "    channels: [log]\n    throttle: {max: 1, per: .inf}\n", "subscriptions[0].throttle.per"),
    ("alerts.yaml", "channels:\n  h:\n    type: webhook\n    url: https://h.example/x\n"
                    "    secret_env: RAQIB_H\n    timeout: 1e300\n", "channels.h.timeout"),
])
def test_numbers_in_other_files_are_bounded(cfg, file, text, key):
    (cfg / file).write_text(text, encoding="utf-8")
    msg = fails(cfg)
    assert f"{file}:" in msg and f": {key}: " in msg, msg


# --------------------------------------------------------------------------- topic aliases

@pytest.mark.parametrize("alias, line", [
    ("''", 4), ("'   '", 4), ("'\u064e\u064f\u0651'", 4), ("'ـــ'", 4), ("'!!!'", 4), ("", 4), ("null", 4),
    ("yes", 4), ("[a, b]", 4),
])
def test_empty_blank_diacritics_null_aliases_refused(cfg, alias, line):
    (cfg / "topics.yaml").write_text(f"topics:\n  - id: t\n    aliases:\n      - {alias}\n",
                                     encoding="utf-8")
    msg = fails(cfg)
    assert f"topics.yaml:{line}: topics[0].aliases[0]: " in msg, msg


def test_empty_context_and_exclude_phrases_refused(cfg):
    (cfg / "topics.yaml").write_text("topics:\n  - id: t\n    aliases: [كورسك]\n    exclude: [كورسك, '  ']\n",
                                     encoding="utf-8")
    assert "topics[0].exclude[1]: " in fails(cfg)


def test_numeric_alias_is_still_text(cfg):
    (cfg / "topics.yaml").write_text("topics:\n  - id: t\n    aliases: [1994, كورسك]\n", encoding="utf-8")
    (cfg / "alerts.yaml").write_text("subscriptions: []\n", encoding="utf-8")  # they name topic:nato
    assert load_config(cfg, env={}).topics[0].aliases == ("1994", "كورسك")


# --------------------------------------------------------------------------- environment overrides

@pytest.mark.parametrize("var, value", [
    ("RAQIB_FETCH__READ_TIMEOUT", "-1"),
    ("RAQIB_FETCH__READ_TIMEOUT", ".inf"),
    ("RAQIB_FETCH__READ_TIMEOUT", "abc"),
    ("RAQIB_FETCH__READ_TIMEOUT", "{a: 1}"),
    ("RAQIB_FETCH__READ_TIMEOUT", "[1, [2]]"),
    ("RAQIB_FETCH__READ_TIMEOUT", "[unclosed"),
    ("RAQIB_FETCH__READ_TIMEOUT", "&a x"),
    ("RAQIB_FETCH__NOPE", "1"),
    ("RAQIB_NOSECTION__X", "1"),
    ("RAQIB_FETCH____X", "1"),
    ("RAQIB_FETCH__READ_TIMEOUT__DEEPER", "1"),
])
def test_env_override_errors_name_the_variable(cfg, var, value):
    (cfg / "raqib.yaml").write_text("fetch:\n  read_timeout: 30\n", encoding="utf-8")
    msg = fails(cfg, {var: value})
    assert f"environment variable {var}:" in msg, msg
    assert "raqib.yaml" not in msg


def test_env_override_conflicting_variables(cfg):
    msg = fails(cfg, {"RAQIB_FETCH__READ_TIMEOUT": "3", "RAQIB_FETCH__READ_TIMEOUT__X": "1"})
    assert "RAQIB_FETCH__READ_TIMEOUT" in msg and "conflicts" in msg


def test_env_override_list_still_allowed(cfg):
    c = load_config(cfg, env={"RAQIB_INDEX__URLS": '["http://127.0.0.1:9200"]'})
    assert c.settings.index.urls == ("http://127.0.0.1:9200",)


def test_index_url_credentials_refused_without_echo(cfg):
    (cfg / "raqib.yaml").write_text("index:\n  urls:\n    - https://elastic:topsecretpw@es.example.org:9200\n",
                                    encoding="utf-8")
    msg = fails(cfg)
    assert "raqib.yaml:3: index.urls[0]: credentials" in msg and "topsecretpw" not in msg
    msg = fails(cfg, {"RAQIB_INDEX__URLS": '["https://u:topsecretpw@es.example.org"]'})
    assert "environment variable RAQIB_INDEX__URLS: index.urls[0]: credentials" in msg
    assert "topsecretpw" not in msg


def test_file_error_is_still_blamed_on_the_file(cfg):
    (cfg / "raqib.yaml").write_text("fetch:\n  read_timeout: -1\n", encoding="utf-8")
    msg = fails(cfg, {"RAQIB_LOG__LEVEL": "DEBUG"})
    assert "raqib.yaml:2: fetch.read_timeout:" in msg


# --------------------------------------------------------------------------- channels and secrets

TG = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SLACK = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
DISCORD = "4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"


def channel(cfg: Path, spec: str) -> str:
    (cfg / "alerts.yaml").write_text(f"channels:\n  c:\n{spec}", encoding="utf-8")
    return fails(cfg)


@pytest.mark.parametrize("spec, secret", [
    ("    type: apprise\n    url: mailtos://u:hunter2pw@smtp.example.org\n", "hunter2pw"),
    ("    type: apprise\n    url: json://bot:pw-Zq8x@hooks.example.org/\n", "pw-Zq8x"),
    (f"    type: apprise\n    url: tgram://{TG}/-100123\n", TG.split(":")[1]),
    (f"    type: apprise\n    url: tgram://bot{TG}/-100123\n", TG.split(":")[1]),
    (f"    type: telegram\n    token: '{TG}'\n    chat_id: -100123\n", TG.split(":")[1]),
    (f"    type: telegram\n    token: '${{RAQIB_X}}'\n    chat_id: 'bot{TG}'\n", TG.split(":")[1]),
    (f"    type: slack\n    url: https://hooks.slack.com/services/{SLACK}\n", "TIiajkdnlazkcOXrIdevi7FQ"),
    (f"    type: apprise\n    url: slack://{SLACK}/#general\n", "TIiajkdnlazkcOXrIdevi7FQ"),
    ("    type: apprise\n    url: slack://xoxb-1234-1234-abc124/#chan\n", "xoxb-1234-1234-abc124"),
    (f"    type: discord\n    url: https://discord.com/api/webhooks/{DISCORD}\n", "JHMHI8qBe7bk2ZwO5U711o3dV_js"),
    (f"    type: apprise\n    url: discord://{DISCORD}\n", "JHMHI8qBe7bk2ZwO5U711o3dV_js"),
    ("    type: json\n    url: https://hooks.example.org/x?token=s3cr3tvalue\n", "s3cr3tvalue"),
    ("    type: webhook\n    url: https://hooks.example.org/x?api_key=s3cr3tvalue\n    secret_env: RAQIB_H\n",
     "s3cr3tvalue"),
    ("    type: apprise\n    url: gotify://gotify.example.org/AbCdEfGhIjKlMnO\n", "AbCdEfGhIjKlMnO"),
    ("    type: apprise\n    url: pbul://o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b\n", "o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b"),
    ("    type: webhook\n    url: https://h.example/x\n    secret: whsec-literal-123\n", "whsec-literal-123"),
    ("    type: webhook\n    url: https://h.example/x\n    secret_env: whsec-literal-123\n", "whsec-literal-123"),
    ("    type: email\n    host: smtp.example.org\n    user: u\n    password: hunter2pw\n", "hunter2pw"),
])
def test_literal_secrets_refused_in_every_apprise_form_and_never_echoed(cfg, spec, secret):
    msg = channel(cfg, spec)
    assert "alerts.yaml:" in msg and "channels.c." in msg and "environment" in msg, msg
    assert secret not in msg


@pytest.mark.parametrize("spec", [
    "    type: apprise\n    url: mailtos://u:${RAQIB_SMTP_PASSWORD}@smtp.example.org?to=a@example.org\n",
    "    type: apprise\n    url: tgram://${RAQIB_TG_TOKEN}/-100123\n",
    "    type: slack\n    url: ${RAQIB_SLACK_HOOK}\n",
    "    type: apprise\n    url: slack://${RAQIB_A}/${RAQIB_B}/${RAQIB_C}/#general\n",
    "    type: apprise\n    url: discord://4174216298/${RAQIB_DISCORD_TOKEN}\n",
    "    type: discord\n    url: https://discord.com/api/webhooks/4174216298/${RAQIB_DISCORD_TOKEN}\n",
    "    type: json\n    url: https://hooks.example.org/x?token=${RAQIB_TOKEN}\n",
    "    type: webhook\n    url: https://h.example/x\n    secret_env: RAQIB_H\n",
    "    type: telegram\n    token: ${RAQIB_TG}\n    chat_id: -100123\n",
    "    type: email\n    host: smtp.example.org\n    user: alerts@example.org\n    password: ${RAQIB_PW}\n"
    "    to: [a@example.org]\n",
])
def test_secrets_from_environment_are_accepted(cfg, spec):
    (cfg / "alerts.yaml").write_text(f"channels:\n  c:\n{spec}", encoding="utf-8")
    assert "c" in load_config(cfg, env={}).alerts.channels


def test_unknown_channel_type_names_file_line_and_key(cfg):
    msg = channel(cfg, "    url: https://x.example/\n    type: carrier-pigeon\n")
    assert "unknown channel type" in channel(cfg, "    type: LOG\n")
    assert "alerts.yaml:4: channels.c.type: unknown channel type 'carrier-pigeon'" in msg


def test_env_reference_outside_raqib_namespace_refused(cfg):
    msg = channel(cfg, "    type: slack\n    url: ${HOME}\n")
    assert "alerts.yaml:4: channels.c.url:" in msg and "RAQIB_" in msg


def test_unknown_channel_in_subscription_names_its_line(cfg):
    (cfg / "alerts.yaml").write_text("channels: {log: {type: log}}\nsubscriptions:\n  - id: s\n"
                                     "    query: كورسك\n    channels:\n      - log\n      - nope\n",
                                     encoding="utf-8")
    assert "alerts.yaml:7: subscriptions[0].channels[1]: unknown channel 'nope'" in fails(cfg)


@pytest.mark.parametrize("query", ["NOT (" * 400 + "x" + ")" * 400, "(" * 1000 + "x" + ")" * 1000,
                                   "date:9999999d", "date:>9999-12-31"])
def test_hostile_subscription_query_is_a_config_error(cfg, query):
    (cfg / "alerts.yaml").write_text("channels: {log: {type: log}}\nsubscriptions:\n  - id: s\n"
                                     f"    query: '{query}'\n    channels: [log]\n", encoding="utf-8")
    try:
        load_config(cfg, env={})  # a parser may accept a far date; it must not crash
    except ConfigError as e:
        assert "alerts.yaml:4: subscriptions[0].query:" in str(e)


# --------------------------------------------------------------------------- feed urls

@pytest.mark.parametrize("url, problem", [
    ("http://user:topsecretpw@feeds.example.org/rss", "credentials"),
    ("https://topsecretpw@feeds.example.org/rss", "credentials"),
    ("ftp://user:topsecretpw@feeds.example.org/rss", "credentials"),
    ("'http://feeds.example.org/a b'", "whitespace"),
    ("'http://feeds.example.org/\u202etopsecretpw'", "control"),
    ("'http://[::1/rss'", "not a valid URL"),
])
def test_feed_urls_with_credentials_refused_without_echo(cfg, url, problem):
    (cfg / "feeds.yaml").write_text(f"feeds:\n  - id: a\n    url: {url}\n", encoding="utf-8")
    msg = fails(cfg)
    assert "feeds.yaml:3: feeds[0].url: " in msg and problem in msg, msg
    assert "topsecretpw" not in msg


# --------------------------------------------------------------------------- the command line

def test_cli_unknown_channel_type_exits_2_with_file_and_line(cfg):
    (cfg / "alerts.yaml").write_text("channels:\n  c: {type: carrier-pigeon}\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "subscriptions", "list", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=60)
    assert r.returncode == 2
    assert "alerts.yaml:2: channels.c.type: unknown channel type" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_bad_env_override_exits_2_naming_variable(cfg):
    r = subprocess.run([sys.executable, "-m", "raqib.cli", "subscriptions", "list", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "RAQIB_FETCH__TOTAL_TIMEOUT": "{x: [1, 2]}"})
    assert r.returncode == 2
    assert "RAQIB_FETCH__TOTAL_TIMEOUT" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- fuzz (issue 7, item 8)
# Broken documents and mutated real configs through the real loader: the only outcome other
# than success is one ConfigError line. RAQIB_FUZZ_EXAMPLES raises the count for longer runs.

FILES = ("raqib.yaml", "feeds.yaml", "topics.yaml", "alerts.yaml")
EXAMPLES = int(os.environ.get("RAQIB_FUZZ_EXAMPLES", "150"))
YAMLISH = ("&a ", "*a", "<<: *a\n", "\n  - ", ": ", "[", "]", "{", "}", ",", "!!python/object:os.system ",
           "!!binary ", "!!float ", ".inf", "-.inf", ".nan", "1e300", "-1", "0", "null", "~", "yes", "''",
           "'\\u202e'", '"\\0"', "\t", "\n", "#", "|\n", ">-\n", "? ", "---\n", "...\n", "%YAML 1.1\n",
           "9" * 5000, "2024-13-45", "\u064e\u064f", "${HOME}", "${RAQIB_X}", "tgram://123456789:AAHdqTcvCH1vGWJxf/1",
           "http://u:pw@h/", "type: nope", "aliases: ", "query: 'NOT (((('", "\ufeff", "\x00", "\x85")
ORIGINAL = {f: (ROOT / "config" / f).read_text(encoding="utf-8") for f in FILES}


def _fuzz_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz") / "config"
    shutil.copytree(ROOT / "config", d)
    return d


@pytest.fixture(scope="module")
def fuzz_cfg(tmp_path_factory) -> Path:
    return _fuzz_dir(tmp_path_factory)


def load_only_config_error(cfg: Path, file: str, text: str, env: dict | None = None) -> None:
    """Write `text` as `file`, load everything; success or one ConfigError line, nothing else."""
    (cfg / file).write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(cfg, env=env or {})
    except ConfigError as e:
        assert ONE_LINE.match(str(e)) and len(str(e)) < 2000, str(e)
    finally:
        (cfg / file).write_text(ORIGINAL[file], encoding="utf-8")


def _hypothesis():
    return pytest.importorskip("hypothesis")


hypothesis = _hypothesis()
st = hypothesis.strategies
fuzz_settings = hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                                    suppress_health_check=list(hypothesis.HealthCheck))


@st.composite
def mutated(draw) -> tuple[str, str]:
    file = draw(st.sampled_from(FILES))
    text = ORIGINAL[file]
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(("insert", "delete", "replace", "duplicate")))
        piece = draw(st.one_of(st.sampled_from(YAMLISH), st.text(max_size=8)))
        if op == "insert":
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        elif op == "replace":
            text = text[:pos] + piece + text[pos + len(piece):]
        else:
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end + 1
            text = text[:end] + text[start:end] + text[end:]
    return file, text


@fuzz_settings
@hypothesis.given(case=mutated())
def test_fuzz_mutated_real_configs(fuzz_cfg, case):
    load_only_config_error(fuzz_cfg, *case)


yaml_chars = st.sampled_from(list("{}[]:,-&*!|>'\"#%@?~ \n\t.0123456789eE+axyzـكورسك\u202e\\"))


@fuzz_settings
@hypothesis.given(file=st.sampled_from(FILES),
                  text=st.one_of(st.text(yaml_chars, max_size=300), st.text(max_size=200)))
def test_fuzz_broken_documents(fuzz_cfg, file, text):
    load_only_config_error(fuzz_cfg, file, text)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["${RAQIB_X}", "${HOME}", "mailto://u:pw@h", "tgram://1234:abcdefghijklmnop/1",
                                     "slack://a/b/c", "https://discord.com/api/webhooks/1/tok", "ftp://x"]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                      max_leaves=12)


@st.composite
def replaced_value(draw) -> tuple[str, str]:
    """A real config with one value (at any depth) replaced by an arbitrary YAML value."""
    import yaml

    file = draw(st.sampled_from(FILES))
    data = yaml.safe_load(ORIGINAL[file])
    node, steps = data, draw(st.integers(1, 5))
    for _ in range(steps):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node, key=str)))
            if not isinstance(node[key], dict | list) or draw(st.booleans()):
                node[key] = draw(values)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if not isinstance(node[i], dict | list) or draw(st.booleans()):
                node[i] = draw(values)
                break
            node = node[i]
        else:
            break
    return file, yaml.safe_dump(data, allow_unicode=True)


@fuzz_settings
@hypothesis.given(case=replaced_value())
def test_fuzz_wrong_values_in_real_configs(fuzz_cfg, case):
    load_only_config_error(fuzz_cfg, *case)


@fuzz_settings
@hypothesis.given(name=st.sampled_from(["RAQIB_FETCH__READ_TIMEOUT", "RAQIB_SCHEDULE__JITTER", "RAQIB_LOG__LEVEL",
                                        "RAQIB_INDEX__URLS", "RAQIB_PARSE__WORKERS", "RAQIB_FETCH",
                                        "RAQIB_X__Y__Z", "RAQIB___", "RAQIB_DATA_DIR"]),
                  value=st.one_of(st.text(yaml_chars, max_size=60), st.text(max_size=40)))
def test_fuzz_environment_overrides(fuzz_cfg, name, value):
    load_only_config_error(fuzz_cfg, "raqib.yaml", ORIGINAL["raqib.yaml"], env={name: value})
