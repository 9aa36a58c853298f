"""Builds the tagger from the topic configuration."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.config import TopicConfig
from monitor.tagger import Tagger, TopicRule


def rules_from_config(topics: Iterable[TopicConfig]) -> tuple[TopicRule, ...]:
    return tuple(TopicRule(t.id, t.aliases, t.weak_aliases, t.context, t.exclude, t.context_window)
                 for t in topics)


def build_tagger(topics: Iterable[TopicConfig]) -> Tagger:
    return Tagger(rules_from_config(topics))
