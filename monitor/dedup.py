"""Deciding what is new, changed or already seen: pure, so it is tested without a database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.models import Article
from monitor.parser import canonical_link


@dataclass(frozen=True)
class Decision:
    new: tuple[Article, ...]
    updated: tuple[Article, ...]
    unchanged: int
    link_keys: dict[str, str]  # article id -> canonical link (stored for cross-feed dedup)


def decide(articles: Sequence[Article], known_hashes: Mapping[str, str],
           ids_by_link: Mapping[str, str]) -> Decision:
    """Split a feed's articles into new, updated (text changed) and unchanged.

    An article counts as seen when its id is stored, or when another stored article has the
    same canonical link (the same story syndicated in a second feed under another guid)."""
    new, updated, unchanged = [], [], 0
    link_keys: dict[str, str] = {}
    batch_ids: set[str] = set()
    batch_links: set[str] = set()
    for a in articles:
        link = canonical_link(a.link)
        if a.id in batch_ids or (link and link in batch_links and a.id not in known_hashes):
            unchanged += 1  # duplicate inside the same feed document
            continue
        batch_ids.add(a.id)
        if link:
            batch_links.add(link)
        old = known_hashes.get(a.id)
        if old is None:
            if link and ids_by_link.get(link) not in (None, a.id):
                unchanged += 1
                continue
            new.append(a)
            link_keys[a.id] = link
        elif old != a.content_hash:
            updated.append(a)
        else:
            unchanged += 1
    return Decision(tuple(new), tuple(updated), unchanged, link_keys)
