"""Immutable records exchanged between the stages fetch → parse → analyze → index → alert."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Match:
    """One occurrence of a topic alias; offsets index the article's `text` (title + "\\n" + body)."""

    topic: str
    start: int
    end: int
    text: str


def body_of(summary: str, content: str) -> str:
    """The searchable body: the content, led by the summary when the content lacks it."""
    if content and summary and summary not in content:
        return f"{summary}\n{content}"
    return content or summary


@dataclass(frozen=True, slots=True)
class Analysis:
    """An article's analyzed text, computed once in a parse worker and shipped with it.

    Space-joined strings, not tuples: one string pickles and unpickles far cheaper than
    hundreds of small objects. Tokens are monitor.arabic.tokens() of the title and of the
    body, in order (position i is token i; its index keys are monitor.arabic.forms(token));
    keys are the distinct forms of all of them."""

    title_tokens: str
    body_tokens: str
    title_keys: str
    body_keys: str


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    feed_url: str
    source: str
    title: str
    summary: str
    content: str
    link: str
    published: datetime  # aware, UTC
    fetched: datetime  # aware, UTC
    language: str = ""
    topics: tuple[str, ...] = ()
    matches: tuple[Match, ...] = ()
    # Filled by the parse worker; never stored (an article read back from the store is
    # re-analyzed when needed) and not part of equality.
    analysis: Analysis | None = field(default=None, compare=False, repr=False)

    @property
    def body(self) -> str:
        return body_of(self.summary, self.content)

    @property
    def text(self) -> str:
        """What the tagger reads; match offsets refer to this string."""
        return f"{self.title}\n{self.body}"

    @property
    def content_hash(self) -> str:
        """Changes when the text a reader sees changes; drives update-not-duplicate."""
        h = hashlib.blake2b(digest_size=16)
        for part in (self.title, self.summary, self.content, self.link):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()


@dataclass(frozen=True, slots=True)
class FeedState:
    """What we remember about a feed between polls (and across restarts)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    error_count: int = 0
    last_error: str | None = None
    interval: float | None = None  # seconds; adaptive
    next_due: datetime | None = None
    last_fetched: datetime | None = None
    last_new: datetime | None = None
    seeded: bool = False  # a fetch has succeeded once: later items are news, not back catalogue
    last_status: int | None = None  # HTTP status of the last poll (None: no answer)
    last_items: int | None = None  # items the last fetched body carried


@dataclass(frozen=True, slots=True)
class Mark:
    """A highlighted span: offsets, never inline characters, so a highlight cannot be confused
    with the text's own punctuation (Arabic papers quote with « »). `field` is "title" or
    "body"; `topic` is the topic id when the span is a tagged mention, None for a query word
    or phrase (a phrase is one span)."""

    start: int
    end: int
    field: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Snippet:
    """A window of one field (`text` is field[offset:offset + len(text)]) with its marks,
    offsets relative to `text`. cut_start/cut_end: the field goes on before/after it."""

    text: str = ""
    marks: tuple[Mark, ...] = ()
    field: str = "body"
    offset: int = 0
    cut_start: bool = False
    cut_end: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    article: Article
    score: float
    title_marks: tuple[Mark, ...] = ()  # offsets into article.title
    snippet: Snippet = Snippet()


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int
    hits: tuple[SearchHit, ...]
    next_cursor: str | None = None
