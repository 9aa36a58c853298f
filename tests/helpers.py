from __future__ import annotations

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
