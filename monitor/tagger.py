"""Topic tagging: which tracked topics an article mentions, and where.

All alias, context and exclusion phrases of all topics go into one Aho-Corasick automaton
(pyahocorasick) run once over the normalized text; a hit counts only when it starts a word
(or follows a chain of proclitics: للناتو, بكورسك) and ends one (so سيناتور, سيكورسكي and
الناتج never match). Weak aliases (a lone بودابست or الأطلسي) need a context phrase nearby,
and an exclusion phrase (المحيط الأطلسي, اتفاقية بودابست) cancels any hit inside it.

Words are separated as monitor.arabic.WORD_RE separates them: an underscore or a hashtag
sign is a separator like a space, and a run of them with the spaces around it counts as one
space, so the alias حلف شمال الأطلسي is found in "حلف #شمال_الأطلسي".
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick

from monitor.arabic import (MARKS_RE, MIN_STEM_AFTER_BARE_KAF, is_arabic, normalize,
                           normalize_keep_offsets, proclitic_ok)
from monitor.models import Match

STRONG, WEAK, CONTEXT, EXCLUDE = "alias", "weak", "context", "exclude"
_MAX_PREFIX = 4  # longest proclitic chain (e.g. وبال)


@dataclass(frozen=True)
class TopicRule:
    id: str
    aliases: tuple[str, ...]
    weak_aliases: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    context_window: int = 150  # characters on either side of a weak alias


def pattern_of(phrase: str) -> str:
    """Normalized search pattern; a leading article is dropped and re-admitted as a proclitic."""
    p = " ".join(normalize(phrase).split())
    if p.startswith("ال") and is_arabic(p) and len(p.split(" ")[0]) - 2 >= 3:
        p = p[2:]
    return p


def _is_word_char(ch: str) -> bool:
    return ch.isalnum()


def _word_len(norm: str, start: int, end: int) -> int:
    """Length of the first word of the hit norm[start:end]."""
    sp = norm.find(" ", start, end)
    return (sp if sp >= 0 else end) - start


@dataclass
class _Hit:
    topic: str
    kind: str
    start: int  # normalized-text offsets, word start including proclitics
    end: int


@dataclass
class Tagger:
    rules: tuple[TopicRule, ...]
    _automaton: ahocorasick.Automaton = field(init=False, repr=False)

    def __post_init__(self) -> None:
        table: dict[str, list[tuple[str, str]]] = {}
        for rule in self.rules:
            for kind, phrases in ((STRONG, rule.aliases), (WEAK, rule.weak_aliases),
                                  (CONTEXT, rule.context), (EXCLUDE, rule.exclude)):
                for phrase in phrases:
                    pat = pattern_of(phrase)
                    if pat:
                        table.setdefault(pat, []).append((rule.id, kind))
        automaton = ahocorasick.Automaton()
        for pat, entries in table.items():
            automaton.add_word(pat, (len(pat), tuple(entries)))
        if table:
            automaton.make_automaton()
        self._automaton = automaton
        self._by_id = {r.id: r for r in self.rules}

    @property
    def topic_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rules)

    def tag(self, text: str) -> tuple[tuple[str, ...], tuple[Match, ...]]:
        """(topic ids in rule order, matches sorted by position) for `text`."""
        if not self.rules or not text:
            return (), ()
        norm, to_orig = _fold_separators(*_normalize_with_map(text))
        hits = self._hits(norm)
        matches = self._decide(hits)
        out = []
        for h in matches:
            s, e = to_orig(h.start), to_orig(h.end - 1) + 1
            while e < len(text) and MARKS_RE.match(text, e):  # trailing shadda/harakat
                e += 1
            out.append(Match(h.topic, s, e, text[s:e]))
        out.sort(key=lambda m: (m.start, m.end, m.topic))
        found = {m.topic for m in out}
        return tuple(t for t in self.topic_ids if t in found), tuple(out)

    def _hits(self, norm: str) -> list[_Hit]:
        hits = []
        n = len(norm)
        for end_idx, (length, entries) in self._automaton.iter(norm):
            start, end = end_idx - length + 1, end_idx + 1
            if end < n and _is_word_char(norm[end]):
                continue
            word_start = start
            while word_start > 0 and _is_word_char(norm[word_start - 1]) and start - word_start <= _MAX_PREFIX:
                word_start -= 1
            prefix = norm[word_start:start]
            if prefix and (not is_arabic(norm[start]) or not proclitic_ok(prefix)):
                continue
            if prefix.endswith("ك") and _word_len(norm, start, end) < MIN_STEM_AFTER_BARE_KAF:
                continue  # كمال is not ك + مال (see monitor.arabic.min_stem)
            for topic, kind in entries:
                hits.append(_Hit(topic, kind, word_start, end))
        return hits

    def _decide(self, hits: list[_Hit]) -> list[_Hit]:
        """Strong hits, weak hits with a context nearby, none inside an exclude, and no hit
        inside a longer one of the same topic. Linear in the hits up to the (bounded) number of
        contexts near a weak hit: a text that repeats an alias 100,000 times is tagged in
        seconds, not hours (each check used to scan every other hit)."""
        excludes = _Spans([h for h in hits if h.kind == EXCLUDE])
        contexts = _Spans([h for h in hits if h.kind == CONTEXT])
        kept = []
        for h in hits:
            if h.kind not in (STRONG, WEAK):
                continue
            if excludes.covers(h):
                continue
            if h.kind == WEAK and not contexts.near(h, self._by_id[h.topic].context_window):
                continue
            kept.append(h)
        # A hit inside a longer hit of the same topic (الأطلسي inside حلف شمال الأطلسي) is one
        # mention. Sorted by start (longest first), an earlier kept hit of the topic contains
        # this one exactly when the furthest end among them reaches this one's end.
        kept.sort(key=lambda h: (h.start, -(h.end - h.start)))
        result: list[_Hit] = []
        reach: dict[str, int] = {}
        for h in kept:
            if reach.get(h.topic, -1) >= h.end:
                continue
            result.append(h)
            reach[h.topic] = max(reach.get(h.topic, -1), h.end)
        return result


class _Spans:
    """Hits of one kind, per topic, sorted by start, for containment and proximity checks."""

    def __init__(self, hits: list[_Hit]):
        self._by_topic: dict[str, tuple[list[int], list[_Hit], list[int]]] = {}
        grouped: dict[str, list[_Hit]] = {}
        for h in hits:
            grouped.setdefault(h.topic, []).append(h)
        self._longest = max((h.end - h.start for h in hits), default=0)
        for topic, hs in grouped.items():
            hs.sort(key=lambda h: h.start)
            reach, far = [], -1
            for h in hs:
                far = max(far, h.end)
                reach.append(far)  # the furthest end among the spans up to this one
            self._by_topic[topic] = ([h.start for h in hs], hs, reach)

    def covers(self, h: _Hit) -> bool:
        """Some span of h's topic starts at or before h and ends at or after it."""
        got = self._by_topic.get(h.topic)
        if not got:
            return False
        starts, _, reach = got
        i = bisect.bisect_right(starts, h.start)
        return i > 0 and reach[i - 1] >= h.end

    def near(self, h: _Hit, window: int) -> bool:
        """Some span of h's topic overlaps [h.start - window, h.end + window) and is not inside h."""
        got = self._by_topic.get(h.topic)
        if not got:
            return False
        starts, hs, _ = got
        lo = bisect.bisect_left(starts, h.start - window - self._longest)
        hi = bisect.bisect_left(starts, h.end + window)
        return any(c.end > h.start - window and not (c.start >= h.start and c.end <= h.end) for c in hs[lo:hi])


def _normalize_with_map(text: str):
    """Normalized text and a function mapping its offsets back to `text`.

    Normalization only deletes characters (marks, tatweel); an offset maps back by counting
    the deletions before it."""
    deleted = [m.start() for m in MARKS_RE.finditer(text)]
    norm = normalize(text)
    if len(norm) + len(deleted) != len(text):  # lower() changed a length (rare: İ)
        return normalize_keep_offsets(text), _identity
    if not deleted:
        return norm, _identity
    return norm, _deletion_map(deleted)


def _deletion_map(deleted: list[int]):
    """Maps an offset in a text with the characters at the (sorted) offsets `deleted` removed
    back to the offset in the text before the removal."""
    def to_orig(i: int) -> int:
        k = 0
        while True:
            k2 = bisect.bisect_right(deleted, i + k)
            if k2 == k:
                return i + k
            k = k2

    return to_orig


_SEPARATORS_RE = re.compile(r"[_#][ _#]*")


def _fold_separators(norm: str, to_orig):
    """`norm` with every run of underscores and # (and the spaces around them) made one space,
    and its offset map. Texts without either (nearly all) are returned as they are."""
    if "_" not in norm and "#" not in norm:
        return norm, to_orig
    parts: list[str] = []
    deleted: list[int] = []
    last = 0
    for m in _SEPARATORS_RE.finditer(norm):
        a, b = m.start(), m.end()
        if a > last and norm[a - 1] == " ":  # "حلف #شمال": the space before stands for the run
            parts.append(norm[last:a])
            deleted.extend(range(a, b))
        else:
            parts += [norm[last:a], " "]
            deleted.extend(range(a + 1, b))
        last = b
    parts.append(norm[last:])
    inner = _deletion_map(deleted)
    return "".join(parts), lambda i: to_orig(inner(i))


def _identity(i: int) -> int:
    return i


def tag_many(tagger: Tagger, texts: Iterable[str]) -> list[tuple[tuple[str, ...], tuple[Match, ...]]]:
    return [tagger.tag(t) for t in texts]


__all__ = ["Tagger", "TopicRule", "pattern_of", "tag_many"]
