"""A real webhook receiver (aiohttp on loopback) that records what Raqib delivers."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import asynccontextmanager

import pytest_asyncio
from aiohttp import web


class WebhookReceiver:
    def __init__(self) -> None:
        self.deliveries: list[dict] = []  # {"headers", "body", "json"}
        self.fail_next = 0
        self.requests = 0
        self.hang = False  # accept the connection, never answer (a channel that hangs)
        self.delay = 0.0  # seconds before answering
        self.url = ""

    def items(self) -> list[dict]:
        return [it for d in self.deliveries for it in d["json"].get("items", [])]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="try later")
        self.deliveries.append({"headers": dict(request.headers), "body": body,
                                "json": json.loads(body)})
        return web.Response(status=204)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_receiver():
    rec = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def webhook_receiver():
    async with running_receiver() as rec:
        yield rec
