"""Real search-engine nodes for the engine tests, through scripts/opensearch.sh.

Fixtures (import them into a test module):

- `opensearch_url` (session): RAQIB_TEST_OPENSEARCH_URL when set (a node you run yourself;
  never stopped here), else a fresh single node started with
  `scripts/opensearch.sh start --http-port 9250` (RAQIB_TEST_OPENSEARCH_PORT overrides the
  port) and stopped at the end of the session.
- `elasticsearch_url` (session): RAQIB_TEST_ELASTICSEARCH_URL, else the tests are skipped
  ("RAQIB_TEST_ELASTICSEARCH_URL not set"): no Elasticsearch distribution is reachable from
  the package registries these machines can use.
- `opensearch_cluster` (function): a separate three-node cluster on http ports 9260-9262,
  run from its own cache directory (RAQIB_TEST_OPENSEARCH_CLUSTER_HOME, default
  <RAQIB_OPENSEARCH_HOME>-cluster3, sharing the Maven repository) so it never touches the
  single node; stopped when the test ends. Gives a `Cluster` with `urls` and `stop_node()`.

Without Java 11-23 or Maven the tests are skipped with the script's own reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "opensearch.sh"
DEFAULT_HOME = Path(os.environ.get("RAQIB_OPENSEARCH_HOME")
                    or Path.home() / ".cache" / "raqib-opensearch")
START_TIMEOUT = 1200  # a cold first start assembles the distribution with Maven

# What the script says when the machine cannot run a node: skip, don't fail.
_UNAVAILABLE = ("no Java 11-23 found", "mvn not found", "Maven build failed")


@dataclass
class Cluster:
    urls: list[str]
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run_script(*args, env=self.env, timeout=timeout)

    def stop_node(self, i: int, kill: bool = False) -> None:
        args = ["stop-node", str(i)] + (["--kill"] if kill else [])
        r = self.run(*args)
        self.log.append(r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"opensearch.sh {' '.join(args)} failed: {r.stderr[-2000:]}")


def run_script(*args: str, env: dict[str, str] | None = None,
               timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def _check_tools() -> None:
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.skip("bash and curl are needed to run scripts/opensearch.sh")
    if shutil.which("java") is None and not os.environ.get("RAQIB_OPENSEARCH_JAVA_HOME") \
            and not os.environ.get("JAVA_HOME") and not Path("/usr/lib/jvm/java-17-openjdk-amd64").exists():
        pytest.skip("no Java found: OpenSearch 2.19 needs Java 11-23 (set RAQIB_OPENSEARCH_JAVA_HOME)")


def start_cluster(nodes: int, http_port: int, env: dict[str, str] | None = None) -> list[str]:
    """Start nodes; returns their URLs. Skips when Java/Maven are missing, fails otherwise."""
    _check_tools()
    r = run_script("start", "--nodes", str(nodes), "--http-port", str(http_port), env=env)
    if r.returncode != 0:
        tail = r.stderr[-3000:]
        if any(s in r.stderr for s in _UNAVAILABLE):
            pytest.skip(f"cannot run OpenSearch here: {tail.strip().splitlines()[-1]}")
        pytest.fail(f"scripts/opensearch.sh start --nodes {nodes} --http-port {http_port} failed "
                    f"(set RAQIB_TEST_OPENSEARCH_URL to use a running node):\n{tail}",
                    pytrace=False)
    urls = [u.strip() for u in r.stdout.splitlines() if u.strip().startswith("http")]
    assert len(urls) == nodes, r.stdout
    return urls


def stop_cluster(env: dict[str, str] | None = None) -> None:
    r = run_script("stop", env=env, timeout=300)
    if r.returncode != 0:  # pragma: no cover - reported, never silently left running
        raise RuntimeError(f"scripts/opensearch.sh stop failed: {r.stderr[-2000:]}")


@pytest.fixture(scope="session")
def opensearch_url():
    url = os.environ.get("RAQIB_TEST_OPENSEARCH_URL")
    if url:
        yield url.rstrip("/")
        return
    port = int(os.environ.get("RAQIB_TEST_OPENSEARCH_PORT", "9250"))
    urls = start_cluster(1, port)
    try:
        yield urls[0]
    finally:
        stop_cluster()


@pytest.fixture(scope="session")
def elasticsearch_url():
    url = os.environ.get("RAQIB_TEST_ELASTICSEARCH_URL")
    if not url:
        pytest.skip("RAQIB_TEST_ELASTICSEARCH_URL not set")
    return url.rstrip("/")


def cluster_env() -> dict[str, str]:
    home = os.environ.get("RAQIB_TEST_OPENSEARCH_CLUSTER_HOME") or f"{DEFAULT_HOME}-cluster3"
    env = dict(os.environ)
    env["RAQIB_OPENSEARCH_HOME"] = home
    # share the single node's Maven repository: nothing is downloaded twice
    env.setdefault("RAQIB_OPENSEARCH_M2_REPO", str(DEFAULT_HOME / "m2"))
    return env


@pytest.fixture
def opensearch_cluster():
    env = cluster_env()
    port = int(os.environ.get("RAQIB_TEST_OPENSEARCH_CLUSTER_PORT", "9260"))
    urls = start_cluster(3, port, env=env)
    try:
        yield Cluster(urls, env)
    finally:
        stop_cluster(env)
