"""The analyze stage: language, topics and the token view every index and matcher shares.

Analyze once: the parse worker computes the article's tokens and keys (`Analysis`) and ships
them with the Article, so the main process — index, matcher — never tokenizes it again. An
article the drain reads back from the store has no analysis attached; `remember()` (called
when the pipeline stores fresh articles) keeps the shipped ones in a small LRU keyed by
(article id, content hash), and `shipped()` finds them there. A miss (an article from a
previous run, an evicted entry) is analyzed again here: slower, never wrong."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from monitor.arabic import PROCLITICS, forms, tokens
from monitor.language import detect_language
from monitor.models import Analysis, Article
from monitor.query import AnalyzedDoc
from monitor.tagger import Tagger


def analyze_text(title: str, body: str) -> Analysis:
    """Tokens and distinct keys of a title and body."""
    tt, bt = tokens(title), tokens(body)
    return Analysis(title_tokens=" ".join(tt), body_tokens=" ".join(bt),
                    title_keys=_keys(tt), body_keys=_keys(bt))


_CLITIC_INITIALS = frozenset(p[0] for p in PROCLITICS)  # a token starting otherwise has no other form


def _keys(toks: tuple[str, ...]) -> str:
    """Distinct forms of the distinct tokens; forms() is only asked about tokens that can
    start with a proclitic (a third of them), the rest are their own only key."""
    distinct = set(toks)
    keys = set(distinct)
    keys.update(*[forms(t) for t in distinct if t[0] in _CLITIC_INITIALS])
    return " ".join(keys)


def analyze_article(article: Article, tagger: Tagger, declared_language: str = "") -> Article:
    """The article with language, topics, match offsets and its Analysis filled in."""
    text = article.text
    topics, matches = tagger.tag(text)
    lang = article.language or detect_language(text, declared_language)
    return dataclasses.replace(article, topics=topics, matches=matches, language=lang,
                               analysis=analyze_text(article.title, article.body))


# ---- the hand-off from the store's write to the drain's read ----

HANDOFF_SIZE = 16384  # articles; ~7 KB each for an ANT article
# Polls wait before storing more while this many stored articles are still unmatched: the
# main process is behind, and storing more would only push analyses out of the hand-off
# (to be computed again here, making it later still). See Pipeline._backpressure.
BACKLOG_HIGH = HANDOFF_SIZE // 2
# id -> (title, summary, content, analysis): the texts prove the stored copy is the same
# version (comparing equal strings is a memcmp, cheaper than hashing them again)
_handoff: OrderedDict[str, tuple[str, str, str, Analysis]] = OrderedDict()
stats = {"shipped": 0, "handed_off": 0, "analyzed_here": 0}
_handoff_lock = threading.Lock()


def remember(articles: Iterable[Article]) -> None:
    """Keep the shipped analysis of articles just stored, for the drain that reads them back."""
    with _handoff_lock:
        for a in articles:
            if a.analysis is not None:
                _handoff[a.id] = (a.title, a.summary, a.content, a.analysis)
                _handoff.move_to_end(a.id)
        while len(_handoff) > HANDOFF_SIZE:
            _handoff.popitem(last=False)


def shipped(article: Article, consume: bool = False) -> Analysis | None:
    """The analysis that came with this article (or its stored copy), if still known.
    `consume`: the last reader (the matcher) takes it out of the hand-off."""
    if article.analysis is not None:
        stats["shipped"] += 1
        return article.analysis
    with _handoff_lock:
        kept = _handoff.pop(article.id, None) if consume else _handoff.get(article.id)
    if kept is None or kept[:3] != (article.title, article.summary, article.content):
        return None
    stats["handed_off"] += 1
    return kept[3]


def reads() -> int:
    """Analyses read so far (shipped, handed off or computed): a drain that is moving."""
    return stats["shipped"] + stats["handed_off"] + stats["analyzed_here"]


def backlog() -> int:
    """Articles stored with a shipped analysis that the matcher has not read yet."""
    return len(_handoff)


def analysis_of(article: Article, consume: bool = False) -> Analysis:
    """The shipped analysis, else one computed now (an article from the store)."""
    found = shipped(article, consume)
    if found is None:
        stats["analyzed_here"] += 1
        return analyze_text(article.title, article.body)
    return found


class Positions(Sequence):
    """Token positions (each token's forms) of a space-joined token string, built on first
    use: most matcher rules never look at positions, only at keys."""

    __slots__ = ("_tokens", "_positions")

    def __init__(self, token_string: str):
        self._tokens = token_string
        self._positions: list[tuple[str, ...]] | None = None

    def _get(self) -> list[tuple[str, ...]]:
        if self._positions is None:
            self._positions = [forms(t) for t in self._tokens.split()]
        return self._positions

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i):
        p = self._positions
        return (self._get() if p is None else p)[i]

    def __iter__(self):
        return iter(self._get())

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def index_positions(article: Article) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """For an index: title and body positions, each the token's forms (token first), from
    the shipped analysis — what a PreTokenizedString or an FTS row is built from."""
    a = analysis_of(article)
    return [forms(t) for t in a.title_tokens.split()], [forms(t) for t in a.body_tokens.split()]


def index_terms_of(article: Article) -> tuple[str, str]:
    """monitor.arabic.index_terms() of the title and of the body, from the shipped analysis."""
    title, body = index_positions(article)
    return " ".join(" ".join(p) for p in title), " ".join(" ".join(p) for p in body)


def positions(text: str) -> list[tuple[str, ...]]:
    return [forms(t) for t in tokens(text)]


def analyzed_doc(article: Article) -> AnalyzedDoc:
    """The article as the query language sees it; a lookup when its analysis was shipped.
    The matcher is the hand-off's last reader (the index reads before it), so this
    consumes the entry."""
    a = analysis_of(article, consume=True)
    title_keys = frozenset(a.title_keys.split())
    body_keys = frozenset(a.body_keys.split())
    return AnalyzedDoc(
        title=Positions(a.title_tokens),
        body=Positions(a.body_tokens),
        title_keys=title_keys,
        body_keys=body_keys,
        all_keys=set(title_keys).union(body_keys),  # a set: see Matcher.match_doc
        topics=frozenset(article.topics),
        source=article.source,
        lang=article.language,
        published=article.published,
    )
