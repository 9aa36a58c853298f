"""One JSON shape for a search hit, shared by `raqib search --json`, the HTTP API and the
alert payloads, so every consumer sees the same fields."""

from __future__ import annotations

from typing import Any

from monitor.models import SearchHit


def hit_json(h: SearchHit) -> dict[str, Any]:
    a = h.article
    return {"id": a.id, "score": round(h.score, 4), "title": a.title,
            "title_highlighted": h.highlights.get("title", a.title),
            "source": a.source, "link": a.link,
            "published": a.published.isoformat(), "language": a.language,
            "topics": list(a.topics), "snippet": h.snippet}
