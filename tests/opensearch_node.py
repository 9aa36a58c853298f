"""Real search-engine nodes for the engine tests: OpenSearch (scripts/opensearch.sh) and
Elasticsearch 9 and 8 (scripts/elasticsearch.sh), each started once per session on a free
port in its own run directory, so two test sessions on one machine never collide (only the
Maven repository and the unpacked distributions are shared).

Fixtures:

- `opensearch_url`, `es9_url`, `es8_url` (session): a fresh single node, started in the
  background at the start of the session together with the others the selected tests use
  and stopped at its end; or a node you run yourself, never stopped here, from
  RAQIB_TEST_OPENSEARCH_URL, RAQIB_TEST_ES9_URL (or RAQIB_TEST_ELASTICSEARCH_URL),
  RAQIB_TEST_ES8_URL.
- `opensearch_cluster` (function): a separate three-node OpenSearch cluster with its own run
  directory; stopped when the test ends. Gives a `Cluster` with `urls` and `stop_node()`.

Without the tools a node needs (Java, Maven, unzip) the tests are skipped with the
script's own reason; any other start failure fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
START_TIMEOUT = 1200  # a cold first start downloads the distribution with Maven

# (flavor, script, start arguments, environment variable of a node you run yourself)
NODES = {
    "opensearch": ("opensearch", "opensearch.sh", [], ("RAQIB_TEST_OPENSEARCH_URL",)),
    "es9": ("elasticsearch", "elasticsearch.sh", ["--version", "9.5.3"],
            ("RAQIB_TEST_ES9_URL", "RAQIB_TEST_ELASTICSEARCH_URL")),
    "es8": ("elasticsearch", "elasticsearch.sh", ["--version", "8.19.21"], ("RAQIB_TEST_ES8_URL",)),
}

# What the scripts say when the machine cannot run a node: skip, don't fail.
_UNAVAILABLE = ("no Java", "mvn not found", "unzip not found")


@dataclass
class Cluster:
    urls: list[str]
    run_dir: str
    log: list[str] = field(default_factory=list)

    def stop_node(self, i: int, kill: bool = False) -> None:
        args = ["stop-node", str(i), "--run-dir", self.run_dir] + (["--kill"] if kill else [])
        r = run_script("opensearch.sh", *args, timeout=120)
        self.log.append(r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"opensearch.sh {' '.join(args)} failed: {r.stderr[-2000:]}")


def run_script(script: str, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def new_run_dir(name: str) -> str:
    """A directory of this session's own: pid files, urls and the nodes' data go there."""
    return tempfile.mkdtemp(prefix=f"raqib-{name}-")


def start(script: str, run_dir: str, *args: str,
          result: subprocess.CompletedProcess | None = None) -> list[str]:
    """Start node(s) (or take the `result` of a start already run); returns their URLs.
    Skips when a tool is missing, fails otherwise."""
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.skip(f"bash and curl are needed to run scripts/{script}")
    r = result or run_script(script, "start", "--run-dir", run_dir, *args)
    if r.returncode != 0:
        tail = r.stderr[-3000:]
        if any(s in r.stderr for s in _UNAVAILABLE):
            pytest.skip(f"cannot run scripts/{script} here: {tail.strip().splitlines()[-1]}")
        pytest.fail(f"scripts/{script} start {' '.join(args)} failed:\n{tail}", pytrace=False)
    return [u.strip() for u in r.stdout.splitlines() if u.strip().startswith("http")]


def stop(script: str, run_dir: str) -> None:
    r = run_script(script, "stop", "--run-dir", run_dir, timeout=300)
    if r.returncode != 0:  # pragma: no cover - reported, never silently left running
        raise RuntimeError(f"scripts/{script} stop failed: {r.stderr[-2000:]}")
    shutil.rmtree(run_dir, ignore_errors=True)


def _own_url(name: str) -> str | None:
    for var in NODES[name][3]:
        if os.environ.get(var):
            return os.environ[var].rstrip("/")
    return None


# Nodes being started for this session: {name: (run_dir, future of the start's result)}.
_launched: dict[str, tuple[str, Future]] = {}


@pytest.fixture(scope="session", autouse=True)
def _engine_nodes(request):
    """Start every node the selected tests use at once, in the background: three JVMs
    starting together take about as long as the slowest, not the sum. Stops them all at
    the end of the session (also those no test got to use)."""
    wanted = set()
    for item in request.session.items:
        if item.get_closest_marker("engine") is None:  # `-m "not engine"` starts nothing
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        wanted |= {v for v in params.values() if isinstance(v, str) and v in NODES}
        wanted |= {n for n in NODES if f"{n}_url" in getattr(item, "fixturenames", ())}
    wanted = {n for n in wanted if _own_url(n) is None}
    pool = ThreadPoolExecutor(max(1, len(wanted)), thread_name_prefix="raqib-node")
    for name in sorted(wanted):
        _flavor, script, args, _ = NODES[name]
        run_dir = new_run_dir(name)
        _launched[name] = (run_dir, pool.submit(run_script, script, "start", "--run-dir", run_dir, *args))
    yield
    for name, (run_dir, fut) in list(_launched.items()):
        fut.exception()  # wait for a start still running, then stop whatever it started
        stop(NODES[name][1], run_dir)
        del _launched[name]
    pool.shutdown()


def _session_node(name: str) -> str:
    own = _own_url(name)
    if own:
        return own
    _flavor, script, args, _ = NODES[name]
    if name not in _launched:  # not foreseen (e.g. asked for by getfixturevalue only)
        run_dir = new_run_dir(name)
        _launched[name] = (run_dir, Future())
        _launched[name][1].set_result(run_script(script, "start", "--run-dir", run_dir, *args))
    run_dir, fut = _launched[name]
    return start(script, run_dir, *args, result=fut.result())[0]


@pytest.fixture(scope="session")
def opensearch_url():
    return _session_node("opensearch")


@pytest.fixture(scope="session")
def es9_url():
    return _session_node("es9")


@pytest.fixture(scope="session")
def es8_url():
    return _session_node("es8")


@pytest.fixture(scope="session")
def elasticsearch_url(es9_url):
    return es9_url


@pytest.fixture
def opensearch_cluster():
    run_dir = new_run_dir("opensearch-cluster3")
    urls = start("opensearch.sh", run_dir, "--nodes", "3")
    assert len(urls) == 3, urls
    try:
        yield Cluster(urls, run_dir)
    finally:
        stop("opensearch.sh", run_dir)
