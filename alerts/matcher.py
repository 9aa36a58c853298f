"""Matching articles against many stored queries at once (the embedded percolator).

Each subscription's query tree is reduced to anchors: keys of which any matching article
must contain at least one (a word, a topic, a language). Subscriptions are filed under their
anchors; an article only looks at the subscriptions filed under keys it contains, so the cost
per article follows the number of plausible rules, not the number of rules. Where a rule is
an AND, the anchor is its rarest word (document frequencies from the index when given,
else the longest word). A rule whose anchor alone decides it (a word, a topic, an OR of
words) needs no evaluation; the others run their compiled predicate, which has the meaning
of monitor.query.evaluate, the semantics the search index compiles to SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.analysis import analyzed_doc
from monitor.models import Article
from monitor.query import (And, AnalyzedDoc, Clock, Lang, Node, Not, Or, Phrase, Term, Topic,
                           compile_predicate, parse, utcnow)

Anchor = tuple[str, str]  # ("k", word key) | ("t", topic) | ("l", language)
_COST = {"k": 0, "t": 1, "l": 2}  # word anchors are the most selective kind


def anchors(node: Node, df: Mapping[str, int] | None = None) -> frozenset[Anchor] | None:
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
    """The rule in disjunctive normal form over plain words (any field), or None when it has
    anything else (phrases, NOT, fields, filters) or would expand past MAX_CONJUNCTS."""
    match node:
        case Term(key=key, field="any"):
            return [frozenset({key})]
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


@dataclass(frozen=True)
class Rule:
    id: str
    query: str
    node: Node
    predicate: Callable[[AnalyzedDoc], bool]
    exact: bool


class Matcher:
    def __init__(self, rules: Iterable[tuple[str, str]] = (), df: Mapping[str, int] | None = None,
                 clock: Clock = utcnow):
        self.df = df
        self.clock = clock  # read at match time by rules with a relative date (date:24h)
        self.rules: dict[str, Rule] = {}
        self._order: list[Rule] = []
        self._exact: dict[Anchor, list[int]] = defaultdict(list)
        self._check: dict[Anchor, list[int]] = defaultdict(list)
        self._exact_words: dict[str, list[int]] = defaultdict(list)
        self._check_words: dict[str, list[int]] = defaultdict(list)
        self._pairs: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self._pairs_check: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self._always: list[int] = []
        for rid, query in rules:
            self.add(rid, query)

    def add(self, rule_id: str, query: str) -> None:
        if rule_id in self.rules:
            self.remove(rule_id)
        node = parse(query)
        rule = Rule(rule_id, query, node, compile_predicate(node, self.clock), anchor_is_exact(node))
        self.rules[rule_id] = rule
        i = len(self._order)
        self._order.append(rule)
        dnf = conjuncts(node)
        if dnf is not None:  # plain words: single words and word pairs decide without evaluation
            exact_all = True
            for conj in dnf:
                words = self._rarest(conj)
                if len(words) == 1:
                    self._exact_words[words[0]].append(i)
                else:
                    table = self._pairs if len(conj) == 2 else self._pairs_check
                    table[words[0]][words[1]].append(i)
                    exact_all = exact_all and len(conj) == 2
            if not exact_all:
                self._order[i] = Rule(rule.id, rule.query, node, rule.predicate, False)
            return
        required = self._rarest(required_words(node))
        if len(required) >= 2:  # a necessary word pair: far fewer candidates than one word
            self._pairs_check[required[0]][required[1]].append(i)
            return
        a = anchors(node, self.df)
        if a is None:
            self._always.append(i)
            return
        for kind, value in a:
            if kind == "k":
                (self._exact_words if rule.exact else self._check_words)[value].append(i)
            else:
                (self._exact if rule.exact else self._check)[(kind, value)].append(i)

    def _rarest(self, words: frozenset[str]) -> list[str]:
        """The two most selective words, rarest first (df when known, else longest)."""
        key = (lambda w: (self.df.get(w, 0), -len(w), w)) if self.df else (lambda w: (-len(w), w))
        return sorted(words, key=key)[:2]

    def remove(self, rule_id: str) -> None:
        """Forget a rule (its slot stays, inert, until the matcher is rebuilt)."""
        if self.rules.pop(rule_id, None) is None:
            return
        for i, r in enumerate(self._order):
            if r.id == rule_id:
                self._order[i] = Rule(r.id, r.query, r.node, lambda d: False, False)
                for table in (self._exact, self._check, self._exact_words, self._check_words):
                    for lst in table.values():
                        if i in lst:
                            lst.remove(i)
                for pairs in (self._pairs, self._pairs_check):
                    for inner in pairs.values():
                        for lst in inner.values():
                            if i in lst:
                                lst.remove(i)
                if i not in self._always:
                    self._always.append(i)

    def __len__(self) -> int:
        return len(self.rules)

    def match_doc(self, doc: AnalyzedDoc) -> list[str]:
        hit: set[int] = set()
        check: set[int] = set(self._always)
        exact, chk = self._exact_words, self._check_words
        pairs, pairs_check = self._pairs, self._pairs_check
        # an exact set, not a frozenset: CPython's dict-keys `&` takes its fast path only for a
        # set operand (1.6x on match_doc with 100k rules, same matches)
        keys = doc.all_keys if type(doc.all_keys) is set else set(doc.all_keys)
        for k in keys:  # the hot loop: plain string keys, no tuple per probe
            lst = exact.get(k)
            if lst:
                hit.update(lst)
            lst = chk.get(k)
            if lst:
                check.update(lst)
            inner = pairs.get(k)
            if inner:
                for other in inner.keys() & keys:  # set intersection in C
                    hit.update(inner[other])
            inner = pairs_check.get(k)
            if inner:
                for other in inner.keys() & keys:
                    check.update(inner[other])
        others = [("t", t) for t in doc.topics]
        others.append(("l", doc.lang))
        for a in others:
            hit.update(self._exact.get(a, ()))
            check.update(self._check.get(a, ()))
        order = self._order
        for i in check - hit:
            if order[i].predicate(doc):
                hit.add(i)
        return [order[i].id for i in hit]

    def match(self, article: Article) -> list[str]:
        """Ids of the rules `article` satisfies (in no particular order)."""
        return self.match_doc(analyzed_doc(article))

    def match_many(self, articles: Sequence[Article]) -> dict[str, list[str]]:
        return {a.id: self.match(a) for a in articles}
