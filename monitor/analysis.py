"""The analyze stage: language, topics and the token view every index and matcher shares."""

from __future__ import annotations

import dataclasses

from monitor.arabic import forms, tokens
from monitor.language import detect_language
from monitor.models import Article
from monitor.query import AnalyzedDoc
from monitor.tagger import Tagger


def analyze_article(article: Article, tagger: Tagger, declared_language: str = "") -> Article:
    """The article with language, topics and match offsets filled in."""
    topics, matches = tagger.tag(article.text)
    lang = article.language or detect_language(article.text, declared_language)
    return dataclasses.replace(article, topics=topics, matches=matches, language=lang)


def positions(text: str) -> list[tuple[str, ...]]:
    return [forms(t) for t in tokens(text)]


def analyzed_doc(article: Article) -> AnalyzedDoc:
    title = positions(article.title)
    body = positions(article.body)
    title_keys = frozenset(k for p in title for k in p)
    body_keys = frozenset(k for p in body for k in p)
    return AnalyzedDoc(
        title=title,
        body=body,
        title_keys=title_keys,
        body_keys=body_keys,
        all_keys=set(title_keys).union(body_keys),  # a set: see Matcher.match_doc
        topics=frozenset(article.topics),
        source=article.source,
        lang=article.language,
        published=article.published,
    )
