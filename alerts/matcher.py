"""Matching articles against many stored queries at once (the embedded percolator).

Each subscription's query tree is reduced to anchors: keys of which any matching article
must contain at least one (a word, a topic, a language). Subscriptions are filed under their
anchors; an article only evaluates the subscriptions filed under keys it contains, so the
cost per article follows the number of plausible rules, not the number of rules. Evaluation
itself is monitor.query.evaluate, the same semantics the search index compiles to SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.analysis import analyzed_doc
from monitor.models import Article
from monitor.query import And, AnalyzedDoc, Lang, Node, Not, Or, Phrase, Term, Topic, evaluate, parse

Anchor = tuple[str, str]  # ("k", word key) | ("t", topic) | ("l", language)
_COST = {"k": 0, "t": 1, "l": 2}  # prefer selective anchors


def anchors(node: Node) -> frozenset[Anchor] | None:
    """A set of anchors one of which every match contains, or None when there is no such set."""
    match node:
        case Term(key=key):
            return frozenset({("k", key)})
        case Phrase(keys=keys):
            return frozenset({("k", max(keys, key=len))})
        case Topic(id=tid):
            return frozenset({("t", tid)})
        case Lang(code=code):
            return frozenset({("l", code)})
        case Or(children=cs):
            out: set[Anchor] = set()
            for c in cs:
                a = anchors(c)
                if a is None:
                    return None
                out |= a
            return frozenset(out)
        case And(children=cs):
            options = [a for a in (anchors(c) for c in cs if not isinstance(c, Not)) if a]
            if not options:
                return None
            return min(options, key=lambda a: (max(_COST[k] for k, _ in a), len(a)))
    return None


@dataclass(frozen=True)
class Rule:
    id: str
    query: str
    node: Node


class Matcher:
    def __init__(self, rules: Iterable[tuple[str, str]] = ()):
        self.rules: dict[str, Rule] = {}
        self._by_anchor: dict[Anchor, list[Rule]] = defaultdict(list)
        self._always: list[Rule] = []
        for rid, query in rules:
            self.add(rid, query)

    def add(self, rule_id: str, query: str) -> None:
        rule = Rule(rule_id, query, parse(query))
        if rule_id in self.rules:
            self.remove(rule_id)
        self.rules[rule_id] = rule
        a = anchors(rule.node)
        if a is None:
            self._always.append(rule)
        else:
            for anchor in a:
                self._by_anchor[anchor].append(rule)

    def remove(self, rule_id: str) -> None:
        rule = self.rules.pop(rule_id, None)
        if rule is None:
            return
        self._always = [r for r in self._always if r.id != rule_id]
        for lst in self._by_anchor.values():
            if rule in lst:
                lst.remove(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def match_doc(self, doc: AnalyzedDoc) -> list[str]:
        seen: set[str] = set()
        out = []
        by = self._by_anchor
        candidates: list[Rule] = list(self._always)
        for key in doc.title_keys | doc.body_keys:
            lst = by.get(("k", key))
            if lst:
                candidates += lst
        for t in doc.topics:
            candidates += by.get(("t", t), ())
        candidates += by.get(("l", doc.lang), ())
        for rule in candidates:
            if rule.id in seen:
                continue
            seen.add(rule.id)
            if evaluate(rule.node, doc):
                out.append(rule.id)
        return sorted(out)

    def match(self, article: Article) -> list[str]:
        """Ids of the rules `article` satisfies."""
        return self.match_doc(analyzed_doc(article))

    def match_many(self, articles: Sequence[Article]) -> dict[str, list[str]]:
        return {a.id: self.match(a) for a in articles}


__all__ = ["Matcher", "Rule", "anchors"]
