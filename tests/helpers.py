from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from monitor.models import Article
from monitor.parser import article_id


def make_article(title: str, body: str, *, source: str = "test", link: str | None = None,
                 published: datetime | None = None, language: str = "ar",
                 topics: tuple[str, ...] = ()) -> Article:
    link = link or f"https://example.org/{abs(hash((title, body)))}"
    now = datetime.now(UTC)
    return Article(id=article_id("", link, title, ""), feed_url="http://feed.test/rss", source=source,
                   title=title, summary="", content=body, link=link, published=published or now,
                   fetched=now, language=language, topics=topics)


async def wait_until(pred, timeout: float, what: str) -> None:
    """Poll `pred` every 50 ms; fail naming `what` when it is still false after `timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def stop_service(proc: asyncio.subprocess.Process, grace: float = 30) -> int:
    """SIGTERM a `raqib run` process, kill it if it outlives `grace`; its exit code."""
    import signal

    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode
