"""Arabic-aware text analysis shared by the tagger, the index and the alert matcher.

Normalization follows Lucene's ArabicNormalizer (what Elasticsearch's `arabic` analyzer does)
plus digits and Persian letters, so the embedded index and a cluster agree on what a word is.

Clitics: off-the-shelf stemmers mangle the names this product tracks (Snowball turns والناتو
into والنات and بودابست into ودابس; ISRI turns مذكرة into ذكر). Instead of guessing one stem, a
token is indexed under every reading of its leading proclitics (و ف + ب ك ل + ال, and لل):
بالناتو is indexed as بالناتو and ناتو, كورسك as كورسك and ورسك. A query word is looked up
as written, minus a leading definite article, so الناتو finds للناتو/بالناتو/والناتو and
كورسك finds وكورسك/بكورسك — without any stem dictionary that could be wrong. A bare ك is
stripped only before 4 letters or more (min_stem): كمال stays Kamal, not ك + مال.

Words are runs of letters and digits (with their marks); the underscore and # separate words,
so a hashtag #قمة_لاهاي is the words قمة لاهاي for every consumer of these tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

# Combining marks (harakat, shadda, sukun, Quranic marks, superscript alef) and tatweel.
_MARKS = "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640"
MARKS_RE = re.compile(f"[{_MARKS}]")

_TABLE: dict[int, int | str | None] = {}
for _ch in "أإآٱ":
    _TABLE[ord(_ch)] = "ا"
_TABLE.update({ord("ى"): "ي", ord("ة"): "ه", ord("ی"): "ي", ord("ک"): "ك", ord("ۀ"): "ه"})
for _i, _d in enumerate("٠١٢٣٤٥٦٧٨٩"):
    _TABLE[ord(_d)] = str(_i)
for _i, _d in enumerate("۰۱۲۳۴۵۶۷۸۹"):
    _TABLE[ord(_d)] = str(_i)
# Arabic punctuation becomes its Latin counterpart (never part of a word).
_TABLE.update({ord("،"): ",", ord("؛"): ";", ord("؟"): "?", ord("٪"): "%", ord("«"): '"', ord("»"): '"'})
# Whitespace variants map one-to-one so offsets survive.
for _ws in "\t\n\r\u00a0\u2009\u200f\u200e\u200b\u200c\u200d":
    _TABLE[ord(_ws)] = " "
_DELETE = {ord(c): None for c in
           [chr(x) for x in range(0x0610, 0x061B)] + [chr(x) for x in range(0x064B, 0x0660)]
           + ["\u0670", "\u0640"] + [chr(x) for x in range(0x06D6, 0x06DD)]
           + [chr(x) for x in range(0x06DF, 0x06E9)] + [chr(x) for x in range(0x06EA, 0x06EE)]}
NORMALIZE_TABLE = {**_TABLE, **_DELETE}
# The same mapping without deletions: same length in and out, so offsets are unchanged.
_KEEP_LENGTH_TABLE = {**_TABLE, **{k: "\u0640" for k in _DELETE}}

# A word: letters and digits with the marks inside it. The underscore is NOT a word character
# (\w would say it is): #قمة_لاهاي is the two words قمة and لاهاي everywhere — in the index, the
# query, the matcher, the percolator payload and the tagger — so they cannot disagree on it.
_MARKS_NOT_W = "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed"  # tatweel is \w
WORD_RE = re.compile(rf"[^\W_]+(?:[{_MARKS_NOT_W}]+[^\W_]*)*")
ARABIC_RE = re.compile(r"[\u0600-\u06ff]")

# Leading proclitic sequences: conjunction (و ف), preposition (ب ك ل), article (ال), and لل
# (ل + ال with the alef dropped). Ordered longest first.
PROCLITICS: tuple[str, ...] = tuple(sorted(
    {c + p + a for c in ("", "و", "ف") for p in ("", "ب", "ك", "ل") for a in ("", "ال")}
    | {c + "لل" for c in ("", "و", "ف")},
    key=len, reverse=True))
PROCLITICS = tuple(p for p in PROCLITICS if p)
MIN_STEM = 3  # shorter remainders are too ambiguous to strip down to
# A bare ك ("like", no article after it) is rare before an indefinite noun, while words that
# begin with ك are everywhere: on 3,000 ANT articles the 3-letter readings of ك-initial tokens
# are almost all other words (كانت→انت, كبير→بير, كامل→امل, كمال→مال "Kamal"≠"money",
# كامن→امن "latent"≠"security"). Bare ب and ل, by contrast, mostly are prepositions before
# 3-letter stems (بشكل, بسبب, لدعم, لعام, بغزة, لمصر). So a chain ending in a bare ك needs
# a longer remainder; with the article (كالناتو) the usual bound applies.
MIN_STEM_AFTER_BARE_KAF = 4


def min_stem(chain: str) -> int:
    """The shortest remainder a proclitic `chain` may be stripped down to."""
    return MIN_STEM_AFTER_BARE_KAF if chain.endswith("ك") else MIN_STEM


def chains_before(key: str) -> tuple[str, ...]:
    """The proclitic chains p with `key` in forms(p + key): what an index that stores surface
    tokens (a cluster) must expand a query key to. The exact inverse of forms()."""
    return tuple(p for p in PROCLITICS if len(key) >= min_stem(p))


# str.replace per mapped character beats str.translate several times over on Arabic text:
# translate looks every character up in a dict, replace scans in C and usually finds nothing.
_REPLACEMENTS = tuple((chr(k), v) for k, v in _TABLE.items())


def normalize(text: str) -> str:
    """Normalized form of any text: letters unified, marks and tatweel removed, casefolded."""
    if MARKS_RE.search(text):
        text = MARKS_RE.sub("", text)
    for a, b in _REPLACEMENTS:
        text = text.replace(a, b)
    return text.lower()


def normalize_keep_offsets(text: str) -> str:
    """Like normalize() but character-for-character (marks become tatweel, case kept when
    lower-casing would change a length), so offsets are those of the original."""
    out = text.translate(_KEEP_LENGTH_TABLE)
    low = out.lower()
    return low if len(low) == len(out) else out


def is_arabic(word: str) -> bool:
    return ARABIC_RE.search(word) is not None


@lru_cache(maxsize=500_000)
def forms(token: str) -> tuple[str, ...]:
    """Every reading of a normalized token's proclitics, the token itself first."""
    if not is_arabic(token):
        return (token,)
    out = [token]
    for p in PROCLITICS:
        if token.startswith(p) and len(token) - len(p) >= min_stem(p):
            stem = token[len(p):]
            if stem not in out:
                out.append(stem)
    return tuple(out)


_ARTICLE_CHAINS = tuple(p for p in PROCLITICS if p.endswith(("ال", "لل")))


def query_key(word: str) -> str:
    """The index key a query word is looked up by: as written, minus a definite article
    and whatever proclitics lead into it (الناتو, للناتو, بالناتو → ناتو).

    A bare preposition or conjunction is kept (بكورسك stays as typed), because without an
    article the first letter may belong to the word itself (ك in كورسك)."""
    w = normalize(word)
    if is_arabic(w):
        for p in _ARTICLE_CHAINS:
            if w.startswith(p) and len(w) - len(p) >= MIN_STEM:
                return w[len(p):]
    return w


def proclitic_ok(prefix: str) -> bool:
    """True when `prefix` (normalized) can precede a word as a chain of proclitics."""
    return prefix == "" or prefix in _PROCLITIC_SET


_PROCLITIC_SET = frozenset(PROCLITICS)


@lru_cache(maxsize=1024)
def tokens(text: str) -> tuple[str, ...]:
    """Normalized word tokens (fast path: no offsets). Cached: the index and the alert
    matcher read the same article texts one after the other."""
    return tuple(WORD_RE.findall(normalize(text)))


def tokens_with_offsets(text: str) -> Iterator[tuple[str, int, int]]:
    """(normalized token, start, end) with offsets into the ORIGINAL text."""
    for m in WORD_RE.finditer(text):
        yield normalize(m.group()), m.start(), m.end()


def analyze(text: str) -> list[tuple[str, ...]]:
    """Token positions, each the set (tuple) of index keys it answers to."""
    return [forms(t) for t in tokens(text)]


def index_terms(text: str) -> str:
    """Space-joined keys of every token, for a full-text engine that splits on spaces."""
    return " ".join(" ".join(forms(t)) for t in tokens(text))
