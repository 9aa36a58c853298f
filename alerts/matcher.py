"""Matching articles against many stored queries at once (the embedded percolator).

Each subscription's query tree is reduced to anchors: keys of which any matching article
must contain at least one (a word, a topic, a language). Subscriptions are filed under their
anchors in one key index; an article intersects its key set with that index (in C) and only
looks at the subscriptions filed under keys it contains, so the cost per article follows the
number of plausible rules, not the number of rules.

Anchors are chosen by document frequency: a rule is filed under its RAREST word (or word
pair), never under a function word when it has a rarer one. Frequencies come from the caller
(`df`, e.g. document_frequencies() over recent articles) or, by default, from COMMON_KEYS, the
keys frequent in Arabic news. Rules over plain words, topics and languages are kept in
disjunctive normal form: a single key or a key pair decides without evaluation (topics and
languages are pseudo-keys of the article). The others run a compiled predicate with the
meaning of monitor.query.evaluate; phrases in it are checked on token positions (the rarest
phrase word located by a C-level search of the token string, its neighbours compared by
position) instead of scanning every token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerts.common_keys import COMMON_KEYS
from monitor.analysis import analyzed_doc
from monitor.models import Article
from monitor.query import (And, AnalyzedDoc, Clock, Lang, Node, Not, Or, Phrase, Term, Topic,
                           compile_predicate, parse, utcnow)

Anchor = tuple[str, str]  # ("k", word key) | ("t", topic) | ("l", language)
_COST = {"k": 0, "t": 1, "l": 2}  # word anchors are the most selective kind
_PSEUDO = "\x00"  # prefix of topic / language pseudo-keys; never inside a word key


def _topic_key(tid: str) -> str:
    return f"{_PSEUDO}t{tid}"


def _lang_key(code: str) -> str:
    return f"{_PSEUDO}l{code}"


def document_frequencies(docs: Iterable[AnalyzedDoc]) -> dict[str, float]:
    """The share of `docs` containing each key: the `df` a Matcher anchors by."""
    counts: Counter[str] = Counter()
    n = 0
    for d in docs:
        counts.update(d.all_keys)
        n += 1
    return {k: c / n for k, c in counts.items()} if n else {}


def anchors(node: Node, df: Mapping[str, float] | None = None) -> frozenset[Anchor] | None:
    """A set of anchors one of which every match contains, or None when there is no such set."""
    rarity = (lambda k: (df.get(k, 0), -len(k))) if df else (lambda k: (-len(k), k))
    match node:
        case Term(key=key):
            return frozenset({("k", key)})
        case Phrase(keys=keys):
            return frozenset({("k", min(keys, key=rarity))})
        case Topic(id=tid):
            return frozenset({("t", tid)})
        case Lang(code=code):
            return frozenset({("l", code)})
        case Or(children=cs):
            out: set[Anchor] = set()
            for c in cs:
                a = anchors(c, df)
                if a is None:
                    return None
                out |= a
            return frozenset(out)
        case And(children=cs):
            options = [a for a in (anchors(c, df) for c in cs if not isinstance(c, Not)) if a]
            if not options:
                return None

            def cost(a: frozenset[Anchor]):
                kinds = max(_COST[k] for k, _ in a)
                return (kinds, sum(df.get(v, 0) for _, v in a) if df else len(a),
                        -min(len(v) for _, v in a))
            return min(options, key=cost)
    return None


MAX_CONJUNCTS = 16


def conjuncts(node: Node) -> list[frozenset[str]] | None:
    """The rule in disjunctive normal form over plain words (any field), topics and languages
    (as pseudo-keys), or None when it has anything else (phrases, NOT, fields, sources, dates)
    or would expand past MAX_CONJUNCTS."""
    match node:
        case Term(key=key, field="any"):
            return [frozenset({key})]
        case Topic(id=tid):
            return [frozenset({_topic_key(tid)})]
        case Lang(code=code):
            return [frozenset({_lang_key(code)})]
        case Or(children=cs):
            out: list[frozenset[str]] = []
            for c in cs:
                sub = conjuncts(c)
                if sub is None:
                    return None
                out += sub
            return out if len(out) <= MAX_CONJUNCTS else None
        case And(children=cs):
            acc = [frozenset()]
            for c in cs:
                sub = conjuncts(c)
                if sub is None:
                    return None
                acc = [a | b for a in acc for b in sub]
                if len(acc) > MAX_CONJUNCTS:
                    return None
            return acc
    return None


def required_words(node: Node) -> frozenset[str]:
    """Words every match must contain (phrase words and AND-ed terms, not under NOT/OR)."""
    match node:
        case Term(key=key):
            return frozenset({key})
        case Phrase(keys=keys):
            return frozenset(keys)
        case And(children=cs):
            return frozenset().union(*(required_words(c) for c in cs if not isinstance(c, Not)))
    return frozenset()


def anchor_is_exact(node: Node) -> bool:
    """True when containing an anchor already means matching (no evaluation needed)."""
    match node:
        case Term(field="any") | Topic() | Lang():
            return True
        case Or(children=cs):
            return all(anchor_is_exact(c) for c in cs)
    return False


def _has_phrase(node: Node) -> bool:
    match node:
        case Phrase():
            return True
        case And(children=cs) | Or(children=cs):
            return any(_has_phrase(c) for c in cs)
        case Not(child=c):
            return _has_phrase(c)
    return False


class _Joined:
    """Each token sequence (a doc's title or body) as one space-joined string of its tokens,
    built once per sequence and shared by every phrase check on it. Keyed by identity; the
    entry holds the sequence itself, so an id is never reused while cached."""

    def __init__(self, size: int = 8):
        self._cache: dict[int, tuple[Sequence[tuple[str, ...]], str]] = {}
        self._size = size

    def __call__(self, seq: Sequence[tuple[str, ...]]) -> str:
        hit = self._cache.get(id(seq))
        if hit is not None and hit[0] is seq:
            return hit[1]
        s = " " + " ".join([p[0] for p in seq]) + " "
        if len(self._cache) >= self._size:
            self._cache.clear()
        self._cache[id(seq)] = (seq, s)
        return s


def phrase_at(seq: Sequence[tuple[str, ...]], joined: str, keys: tuple[str, ...], a: int) -> bool:
    """phrase_in(seq, keys) by positions: every token holding keys[a] ends with it (a form is
    a suffix of its token, the token first), so str.find over the joined tokens finds each
    candidate position in C; the position's own forms and its neighbours' then decide."""
    needle = keys[a] + " "
    key, n, last = keys[a], len(keys), len(seq) - len(keys)
    pos = count = 0
    while (j := joined.find(needle, pos)) >= 0:
        count += joined.count(" ", pos, j)  # spaces before j = token index + 1
        pos = j + 1
        i = count - 1 - a  # where the phrase would start
        if 0 <= i <= last and key in seq[i + a]:
            for m in range(n):
                if keys[m] not in seq[i + m]:
                    break
            else:
                return True
    return False


def _literals(node: Node) -> tuple[frozenset[str], list[frozenset[str]], frozenset[str]] | None:
    """An AND of plain words, OR-lists of words and NOT of those, as (all of, one of each,
    none of) key sets; None for any other shape."""
    cs = node.children if isinstance(node, And) else (node,)
    req: set[str] = set()
    groups: list[frozenset[str]] = []
    neg: set[str] = set()
    for c in cs:
        positive = not isinstance(c, Not)
        c = c if positive else c.child
        if isinstance(c, Term) and c.field == "any":
            (req if positive else neg).add(c.key)
        elif isinstance(c, Or) and all(isinstance(x, Term) and x.field == "any" for x in c.children):
            keys = frozenset(x.key for x in c.children)  # type: ignore[union-attr]
            if positive:
                groups.append(keys)
            else:
                neg |= keys
        else:
            return None
    return frozenset(req), groups, frozenset(neg)


def _single_key_exclusions(node: Node) -> tuple[frozenset[str], frozenset[str]] | None:
    """(words, excluded words) when `node` is "any of the words and none of the excluded"
    (`a -c`, `(a OR b) -c -d`): each word then decides alone unless an excluded word is there."""
    lits = _literals(node) if isinstance(node, And) else None
    if lits is None:
        return None
    req, groups, neg = lits
    if not neg or len(req) + len(groups) != 1:
        return None
    return (req or groups[0]), neg


def compile_rule(node: Node, clock: Clock, joined: _Joined, rarity: Callable[[str], tuple]):
    """compile_predicate(), with phrases checked by phrase_at() on token positions and
    word-only rules with exclusions as one closure of set operations."""
    lits = _literals(node) if isinstance(node, And) else None
    if lits is not None:
        req, groups, neg = lits
        if len(groups) == 1:
            g = groups[0]
            return lambda d: req <= d.all_keys and neg.isdisjoint(d.all_keys) and not g.isdisjoint(d.all_keys)
        return lambda d: (req <= d.all_keys and neg.isdisjoint(d.all_keys)
                          and all(not g.isdisjoint(d.all_keys) for g in groups))
    if not _has_phrase(node):
        return compile_predicate(node, clock)
    match node:
        case Phrase(keys=keys, field=field):
            kset = frozenset(keys)
            a = min(range(len(keys)), key=lambda m: rarity(keys[m]))

            def phrase(d: AnalyzedDoc) -> bool:
                if field != "body" and kset <= d.title_keys and phrase_at(d.title, joined(d.title), keys, a):
                    return True
                return field != "title" and kset <= d.body_keys and phrase_at(d.body, joined(d.body), keys, a)
            return phrase
        case And(children=cs):
            preds = [compile_rule(c, clock, joined, rarity) for c in cs]
            return lambda d: all(p(d) for p in preds)
        case Or(children=cs):
            preds = [compile_rule(c, clock, joined, rarity) for c in cs]
            return lambda d: any(p(d) for p in preds)
        case Not(child=c):
            pred = compile_rule(c, clock, joined, rarity)
            return lambda d: not pred(d)
    return compile_predicate(node, clock)


@dataclass(frozen=True)
class Rule:
    id: str
    query: str
    node: Node
    predicate: Callable[[AnalyzedDoc], bool]
    exact: bool


def _never(d: AnalyzedDoc) -> bool:
    return False


# one entry per key: rules the key decides, rules it makes candidates, and rules that need a
# second key (decided / candidate) — one dict probe per key of the article
_EXACT, _CHECK, _PAIRS, _PAIRS_CHECK, _EXACT_UNLESS = range(5)  # unless: (rule, excluded keys)


class Matcher:
    def __init__(self, rules: Iterable[tuple[str, str]] = (), df: Mapping[str, float] | None = None,
                 clock: Clock = utcnow):
        """`df`: document frequencies of keys (counts or shares, see document_frequencies());
        COMMON_KEYS when not given, so anchors avoid the words every article has."""
        self.df = COMMON_KEYS if df is None else df
        self.clock = clock  # read at match time by rules with a relative date (date:24h)
        self.rules: dict[str, Rule] = {}
        self._order: list[Rule] = []
        self._ids: list[str] = []
        self._preds: list[Callable[[AnalyzedDoc], bool]] = []
        self._index: dict[str, list] = {}
        self._always: list[int] = []
        self._joined = _Joined()
        for rid, query in rules:
            self.add(rid, query)

    def _rarity(self, w: str) -> tuple:
        """Sort key, rarest first: pseudo-keys (topics, languages) last, then by df, then longest."""
        return (w.startswith(_PSEUDO), self.df.get(w, 0), -len(w), w)

    def _file(self, key: str, slot: int, i: int, other: str | frozenset[str] | None = None) -> None:
        entry = self._index.get(key)
        if entry is None:
            entry = self._index[key] = [None, None, None, None, None]
        if slot == _EXACT_UNLESS:
            if entry[slot] is None:
                entry[slot] = []
            entry[slot].append((i, other))
        elif other is None:
            if entry[slot] is None:
                entry[slot] = []
            entry[slot].append(i)
        else:
            if entry[slot] is None:
                entry[slot] = {}
            entry[slot].setdefault(other, []).append(i)

    def add(self, rule_id: str, query: str) -> None:
        if rule_id in self.rules:
            self.remove(rule_id)
        node = parse(query)
        rule = Rule(rule_id, query, node, compile_rule(node, self.clock, self._joined, self._rarity),
                    anchor_is_exact(node))
        self.rules[rule_id] = rule
        i = len(self._order)
        self._order.append(rule)
        self._ids.append(rule_id)
        self._preds.append(rule.predicate)
        unless = _single_key_exclusions(node)
        if unless is not None:  # (a OR b) -c: a decides unless c is there, no evaluation
            pos, neg = unless
            for key in pos:
                self._file(key, _EXACT_UNLESS, i, neg)
            return
        dnf = conjuncts(node)
        if dnf is not None:  # keys only: single keys and key pairs decide without evaluation
            for conj in dnf:
                words = self._rarest(conj)
                if len(words) == 1:
                    self._file(words[0], _EXACT, i)
                else:
                    self._file(words[0], _PAIRS if len(conj) == 2 else _PAIRS_CHECK, i, words[1])
            return
        required = self._rarest(required_words(node))
        if len(required) >= 2:  # a necessary word pair: far fewer candidates than one word
            self._file(required[0], _PAIRS_CHECK, i, required[1])
            return
        a = anchors(node, self.df)
        if a is None:
            self._always.append(i)
            return
        for kind, value in a:
            key = value if kind == "k" else (_topic_key(value) if kind == "t" else _lang_key(value))
            self._file(key, _EXACT if rule.exact else _CHECK, i)

    def _rarest(self, words: Iterable[str]) -> list[str]:
        """The two most selective keys, rarest first."""
        return sorted(words, key=self._rarity)[:2]

    def remove(self, rule_id: str) -> None:
        """Forget a rule (its slot stays, inert, until the matcher is rebuilt)."""
        if self.rules.pop(rule_id, None) is None:
            return
        for i, r in enumerate(self._order):
            if r.id == rule_id and self._preds[i] is not _never:
                self._order[i] = Rule(r.id, r.query, r.node, _never, False)
                self._preds[i] = _never
                for entry in self._index.values():
                    for slot in (_EXACT, _CHECK):
                        if entry[slot] and i in entry[slot]:
                            entry[slot].remove(i)
                    if entry[_EXACT_UNLESS]:
                        entry[_EXACT_UNLESS] = [x for x in entry[_EXACT_UNLESS] if x[0] != i]
                    for slot in (_PAIRS, _PAIRS_CHECK):
                        for lst in (entry[slot] or {}).values():
                            if i in lst:
                                lst.remove(i)
                if i in self._always:
                    self._always.remove(i)

    def __len__(self) -> int:
        return len(self.rules)

    def filed_under(self, rule_id: str) -> set[tuple[str, str | None]]:
        """Where a rule is filed: (key, second key of a pair or None); "always" when it is
        evaluated for every article. For tests and diagnostics (a full scan)."""
        slots = [i for i, r in enumerate(self._order) if r.id == rule_id and self._preds[i] is not _never]
        out: set[tuple[str, str | None]] = {("always", None) for i in slots if i in self._always}
        for key, entry in self._index.items():
            for i in slots:
                out |= {(key, None) for slot in (_EXACT, _CHECK) if entry[slot] and i in entry[slot]}
                out |= {(key, None) for j, _ in entry[_EXACT_UNLESS] or () if j == i}
                out |= {(key, other) for slot in (_PAIRS, _PAIRS_CHECK)
                        for other, lst in (entry[slot] or {}).items() if i in lst}
        return out

    def match_doc(self, doc: AnalyzedDoc) -> list[str]:
        # an exact set (CPython's dict-keys `&` takes its fast path only for a set operand),
        # with the article's topics and language as pseudo-keys
        keys = set(doc.all_keys)
        keys.update([_topic_key(t) for t in doc.topics])
        keys.add(_lang_key(doc.lang))
        index = self._index
        hit: set[int] = set()
        check: set[int] = set(self._always)
        for k in index.keys() & keys:  # the keys that file any rule, found in C
            exact, chk, pairs, pairs_check, unless = index[k]
            if exact:
                hit.update(exact)
            if unless:
                for i, neg in unless:
                    if neg.isdisjoint(keys):
                        hit.add(i)
            if chk:
                check.update(chk)
            if pairs:
                for other in pairs.keys() & keys:
                    hit.update(pairs[other])
            if pairs_check:
                for other in pairs_check.keys() & keys:
                    check.update(pairs_check[other])
        if check:
            check -= hit
            preds = self._preds
            hit.update([i for i in check if preds[i](doc)])
        return list(map(self._ids.__getitem__, hit))

    def match(self, article: Article) -> list[str]:
        """Ids of the rules `article` satisfies (in no particular order)."""
        return self.match_doc(analyzed_doc(article))

    def match_many(self, articles: Sequence[Article]) -> dict[str, list[str]]:
        return {a.id: self.match(a) for a in articles}
