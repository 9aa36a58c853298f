"""Serving the app: uvicorn inside the caller's event loop (`raqib run` beside the poller) or
alone over a data dir (`raqib web`, the read side).

The listening socket is bound before anything else starts, so a port in use is one clear
line and exit status 2, not a traceback after the poller is up."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket

import uvicorn

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.store import Store

log = logging.getLogger("raqib.web")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def check_access(config: Config) -> None:
    """Refuse to serve on a non-loopback address while no API token exists."""
    web = config.settings.web
    if not web.tokens_required:
        return
    store = Store(config.data_dir / "raqib.db")
    try:
        live = store.live_tokens()
    finally:
        store.close()
    if not live:
        raise ConfigError(f"web.listen {web.listen} is not a loopback address and there is no API token: "
                          "create one with `raqib tokens create --scope admin` (or listen on 127.0.0.1)")


def bind(config: Config) -> socket.socket:
    """The listening socket for web.listen; ConfigError naming the address when it is taken."""
    web = config.settings.web
    host = web.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, web.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise ConfigError(f"web.listen {web.listen}: cannot listen: {why}") from None
    except OverflowError:
        sock.close()
        raise ConfigError(f"web.listen {web.listen}: port out of range") from None
    return sock


class WebServer:
    """Bound at construction (errors early), serving from start() until stop()."""

    def __init__(self, config: Config):
        self.config = config
        check_access(config)
        self.sock = bind(config)
        self.ctx = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    async def start(self, pipeline=None) -> None:
        """Serve the app; with `pipeline` (the service's), actions reach the poller."""
        from indexers.factory import make_index
        from raqib.web.app import create_app
        from raqib.web.context import WebContext

        db = self.config.data_dir / "raqib.db"
        self.ctx = WebContext(self.config, Store(db), make_index(self.config, db), pipeline)
        app = create_app(self.ctx)
        cfg = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                             server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
        self._server = _EmbeddedServer(cfg)
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise ConfigError(f"web.listen {self.config.settings.web.listen}: the web server did not start")
            await asyncio.sleep(0.02)
        log.info("web app serving", extra={"listen": self.config.settings.web.listen,
                                           "mode": "read side" if pipeline is None else "service"})

    async def stop(self) -> None:
        """Stop serving and close the web side's store and index; a second call does nothing."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
            self._server = self._task = None
        if self.ctx is not None:
            await self.ctx.index.close()
            self.ctx.close()
            self.ctx = None
        self.sock.close()


async def serve_alone(config: Config, stop: asyncio.Event | None = None) -> None:
    """`raqib web`: the app over a data dir, no poller, until SIGINT/SIGTERM (or `stop`)."""
    if not (config.data_dir / "raqib.db").exists():
        raise ConfigError(f"{config.data_dir}: no Raqib data here (raqib.db is missing); "
                          "point --data-dir at a data dir that `raqib run` or `raqib once` filled")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = WebServer(config)
    await server.start(None)
    try:
        await stop.wait()
    finally:
        await server.stop()
