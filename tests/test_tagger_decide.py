"""The tagger's decision step is linear (a text repeating an alias 100,000 times took minutes:
every check scanned every other hit) and decides exactly as the plain quadratic rules below."""

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import load_config
from monitor.tagger import CONTEXT, EXCLUDE, STRONG, WEAK, Tagger, TopicRule, _Hit
from monitor.topics import build_tagger
from tests.e2e_setup import ROOT

RULES = (TopicRule("a", ("x",), context_window=5), TopicRule("b", ("y",), context_window=12))
TAGGER = Tagger(RULES)


def reference(tagger: Tagger, hits: list[_Hit]) -> list[_Hit]:
    """The rules as first written: any exclude covering, any context near, any longer hit."""
    excludes = [h for h in hits if h.kind == EXCLUDE]
    contexts = [h for h in hits if h.kind == CONTEXT]
    kept = []
    for h in hits:
        if h.kind not in (STRONG, WEAK):
            continue
        if any(x.topic == h.topic and x.start <= h.start and h.end <= x.end for x in excludes):
            continue
        if h.kind == WEAK:
            window = tagger._by_id[h.topic].context_window
            if not any(c.topic == h.topic and c.start < h.end + window and c.end > h.start - window
                       and not (c.start >= h.start and c.end <= h.end) for c in contexts):
                continue
        kept.append(h)
    kept.sort(key=lambda h: (h.start, -(h.end - h.start)))
    result: list[_Hit] = []
    for h in kept:
        if any(r.topic == h.topic and r.start <= h.start and h.end <= r.end for r in result):
            continue
        result.append(h)
    return result


hit = st.builds(lambda topic, kind, start, length: _Hit(topic, kind, start, start + length),
                st.sampled_from(["a", "b"]), st.sampled_from([STRONG, WEAK, CONTEXT, EXCLUDE]),
                st.integers(0, 60), st.integers(1, 15))


@settings(max_examples=600, deadline=None)
@given(st.lists(hit, max_size=40))
def test_decisions_equal_the_plain_rules(hits):
    assert TAGGER._decide(list(hits)) == reference(TAGGER, list(hits))


def test_a_text_repeating_an_alias_is_tagged_whole():
    tagger = build_tagger(load_config(ROOT / "config").topics)
    topics, matches = tagger.tag(" ".join(["كورسك"] * 50_000))
    assert topics == ("kursk",) and len(matches) == 50_000
