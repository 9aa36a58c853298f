"""One JSON shape for a search hit, shared by `raqib search --json`, the HTTP API and the
alert payloads, so every consumer sees the same fields.

Highlights are offsets, never inline marks: `title_marks` index `title`; `snippet.marks`
index `snippet.text`; `mentions` are the tagger's spans of every topic, offsets into
title + "\\n" + body (what `raqib tag` prints). See README "Search output"."""

from __future__ import annotations

from typing import Any

from monitor.models import Mark, SearchHit, Snippet


def mark_json(m: Mark) -> dict[str, Any]:
    return {"start": m.start, "end": m.end, "field": m.field, "topic": m.topic}


def snippet_json(s: Snippet) -> dict[str, Any]:
    return {"text": s.text, "marks": [mark_json(m) for m in s.marks], "field": s.field,
            "offset": s.offset, "cut_start": s.cut_start, "cut_end": s.cut_end}


def hit_json(h: SearchHit) -> dict[str, Any]:
    a = h.article
    return {"id": a.id, "title": a.title, "link": a.link, "source": a.source,
            "published": a.published.isoformat(), "language": a.language,
            "topics": list(a.topics), "score": round(h.score, 4),
            "snippet": snippet_json(h.snippet),
            "title_marks": [mark_json(m) for m in h.title_marks],
            "mentions": [{"topic": m.topic, "start": m.start, "end": m.end, "text": m.text}
                         for m in a.matches]}
