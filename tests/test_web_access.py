"""Serving and access: API tokens (hash only, scopes, revocation), the refusal to serve off
loopback without a token, a taken port, the live SSE stream during a real poll, and
`raqib run` serving the API beside the poller."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3

import httpx
import pytest
import yaml

from monitor.config import load_config
from monitor.errors import ConfigError
from raqib.service import run_once
from raqib.web.server import check_access
from tests.corpus import ant_item, rss
from tests.e2e_setup import write_config
from tests.feedserver import FeedServer
from tests.receivers import free_port
from tests.web_setup import RAQIB, fill, run_cli, sample_docs, serving, wait_for, with_web

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-access")
    return asyncio.run(fill(tmp, sample_docs(40)))


def _settings(cfg_dir, **web):
    path = cfg_dir / "raqib.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["web"] = web
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def test_tokens_are_shown_once_and_stored_only_as_a_hash(master):
    cfg = str(master)
    made = run_cli("tokens", "create", "--scope", "read", "--name", "grafana", "--config", cfg, "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert token.startswith("raqib_") and len(token) > 40
    listed = run_cli("tokens", "list", "--json", "--config", cfg)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scope"], r["revoked"]) for r in rows if r["id"] == json.loads(made.stdout)["id"]] == [
        ("grafana", "read", None)]
    assert token not in listed.stdout and token[-20:] not in listed.stdout
    config = load_config(master)
    raw = (config.data_dir / "raqib.db").read_bytes()
    wal = config.data_dir / "raqib.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw and token[-20:].encode() not in raw
    bad = run_cli("tokens", "create", "--scope", "root", "--config", cfg)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    gone = run_cli("tokens", "revoke", "nosuchid", "--config", cfg)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1


def test_non_loopback_listen_without_a_token_is_refused(tmp_path):
    cfg_dir = write_config(tmp_path, [("x", "http://127.0.0.1:9/x.xml")])
    _settings(cfg_dir, listen="0.0.0.0:8321")
    config = load_config(cfg_dir)
    assert config.settings.web.tokens_required and not config.settings.web.loopback
    with pytest.raises(ConfigError, match="not a loopback address and there is no API token"):
        check_access(config)
    (tmp_path / "data").mkdir(exist_ok=True)
    sqlite3.connect(tmp_path / "data" / "raqib.db").close()
    for cmd in (["web"], ["run"]):
        r = run_cli(*cmd, "--config", str(cfg_dir))
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stderr.count("\n") == 1 and "raqib tokens create" in r.stderr
    made = run_cli("tokens", "create", "--scope", "admin", "--config", str(cfg_dir))
    assert made.returncode == 0
    check_access(load_config(cfg_dir))  # a token exists now: allowed
    for bad in ("0.0.0.0", "host:99999", "[::1]8321", "a b:80"):
        _settings(cfg_dir, listen=bad)
        with pytest.raises(ConfigError, match="web.*listen"):
            load_config(cfg_dir)
    _settings(cfg_dir, listen="[::1]:8321")
    assert load_config(cfg_dir).settings.web.loopback
    os.environ["RAQIB_WEB__LISTEN"] = "10.1.2.3:80"
    try:
        assert load_config(cfg_dir).settings.web.tokens_required
    finally:
        del os.environ["RAQIB_WEB__LISTEN"]


def test_a_taken_port_is_one_line_and_exit_2(master):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run_cli("web", "--listen", f"127.0.0.1:{port}", "--config", str(master))
    assert r.returncode == 2
    assert r.stderr.strip() == f"raqib: configuration error: web.listen 127.0.0.1:{port}: cannot listen: " \
                               "address already in use"
    r = run_cli("web", "--listen", "nonsense", "--config", str(master))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--listen" in r.stderr


async def test_tokens_and_scopes_when_required(master):
    config = with_web(load_config(master), require_tokens=True)
    read = json.loads(run_cli("tokens", "create", "--scope", "read", "--json", "--config", str(master)).stdout)
    admin = json.loads(run_cli("tokens", "create", "--scope", "admin", "--json", "--config", str(master)).stdout)
    bearer = lambda t: {"Authorization": f"Bearer {t['token']}"}
    async with serving(config) as c:
        assert (await c.get("/healthz")).status_code == 200  # liveness needs no token
        for path in ("/api/v1/search?q=الناتو", "/api/v1/topics", "/readyz", "/metrics", "/openapi.json",
                     "/docs", "/feeds/search.atom?q=الناتو", "/api/v1/stream?q=الناتو"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer" and r.headers["content-type"].startswith(PROBLEM)
        r = await c.get("/api/v1/topics", headers={"Authorization": "Bearer raqib_nope_nope"})
        assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
        r = await c.get("/api/v1/topics", headers={"Authorization": "Basic abc"})
        assert r.status_code == 401
        assert (await c.get("/api/v1/search", params={"q": "الناتو"}, headers=bearer(read))).status_code == 200
        r = await c.post("/api/v1/alerts/outbox/retry", headers=bearer(read))
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        r = await c.post("/api/v1/alerts/outbox/retry", headers=bearer(admin))
        assert r.status_code == 409  # admin may; the read side has no poller
        assert run_cli("tokens", "revoke", read["id"], "--config", str(master)).returncode == 0
        r = await c.get("/api/v1/topics", headers=bearer(read))
        assert r.status_code == 401
        from raqib.web.auth import verify_token

        assert await asyncio.to_thread(verify_token, c.ctx, admin["token"]) == "admin"
        assert await asyncio.to_thread(verify_token, c.ctx, read["token"]) is None
    listed = {t["id"]: t for t in json.loads(run_cli("tokens", "list", "--json", "--config", str(master)).stdout)}
    assert listed[admin["id"]]["last_used"] and listed[read["id"]]["revoked"]


async def test_stream_sends_new_matching_articles_during_a_real_poll(tmp_path):
    """An SSE client connected before a poll receives each new matching article once, with
    its rowid as the event id; a non-matching article is not sent."""
    feeds = await FeedServer().start()
    try:
        pub = "Sat, 01 Nov 2025 10:00:00 GMT"
        from tests.corpus import rss_item

        feeds.set_feed("/f.xml", rss([rss_item("خبر قديم", "https://ex.org/old", "لا شيء هنا", pub)]))
        cfg_dir = write_config(tmp_path, [("live", feeds.url("/f.xml"))])
        config = load_config(cfg_dir)
        await run_once(config)
        async with serving(config) as c:
            events: list[tuple[str, str, dict]] = []

            async def listen():
                async with c.stream("GET", "/api/v1/stream", params={"q": "كورسك"}) as r:
                    assert r.headers["content-type"].startswith("text/event-stream")
                    ev, eid = "", ""
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            ev = line[7:]
                        elif line.startswith("id: "):
                            eid = line[4:]
                        elif line.startswith("data: "):
                            events.append((ev, eid, json.loads(line[6:])))
                            eid = ""

            task = asyncio.create_task(listen())
            await wait_for(lambda: _true(events))  # "ready": subscribed before the poll
            feeds.set_feed("/f.xml", rss([
                rss_item("خبر قديم", "https://ex.org/old", "لا شيء هنا", pub),
                rss_item("معارك في كورسك", "https://ex.org/k1", "تقدم في منطقة كورسك", pub),
                rss_item("الطقس", "https://ex.org/w", "أمطار غزيرة", pub),
                rss_item("وفد إلى بكورسك", "https://ex.org/k2", "زيارة لكورسك اليوم", pub)]))
            await run_once(config)
            await wait_for(lambda: _true([e for e in events if e[0] == "article"][1:]))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await feeds.stop()
    assert events[0][0] == "ready"
    arts = [(eid, d) for ev, eid, d in events if ev == "article"]
    assert [d["link"] for _, d in arts] == ["https://ex.org/k1", "https://ex.org/k2"]
    assert all(eid.isdigit() for eid, _ in arts) and int(arts[0][0]) < int(arts[1][0])
    assert "«كورسك»" in arts[0][1]["snippet"]


async def _true(x):
    return bool(x)


async def test_raqib_run_serves_the_api_beside_the_poller(tmp_path):
    """`raqib run`: the poller stores articles, the API on web.listen finds them, /readyz is
    ready, and SIGTERM stops both (exit 0)."""
    feeds = await FeedServer().start()
    try:
        from tests.corpus import topical_docs

        feeds.set_feed("/a.xml", rss([ant_item(d) for d in topical_docs()[:15]]))
        cfg_dir = write_config(tmp_path, [("ant", feeds.url("/a.xml"))])
        port = free_port()
        _settings(cfg_dir, listen=f"127.0.0.1:{port}")
        proc = await asyncio.create_subprocess_exec(
            *RAQIB, "run", "--config", str(cfg_dir), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(__file__)))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                async def found():
                    try:
                        r = await c.get("/api/v1/search", params={"q": "lang:ar"})
                    except httpx.TransportError:
                        return None
                    return r.json() if r.status_code == 200 and r.json()["total"] == 15 else None

                body = await wait_for(found, timeout=60, every=0.3)
                assert len(body["hits"]) == 15
                ready = await c.get("/readyz")
                assert ready.status_code == 200 and ready.json()["mode"] == "service"
                metrics = (await c.get("/metrics")).text
                assert 'raqib_polls_total{status="ok"} 1.0' in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        await feeds.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)




def test_the_listening_socket_is_tcp_so_responses_are_not_delayed(master):
    """asyncio sets TCP_NODELAY only on sockets created as IPPROTO_TCP; a socket made with
    proto 0 left every response waiting ~40 ms for a delayed ACK."""
    from raqib.web.server import bind

    config = with_web(load_config(master), listen=f"127.0.0.1:{free_port()}")
    sock = bind(config)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
