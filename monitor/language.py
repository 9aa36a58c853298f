"""Language of an article: the feed's declaration and a cheap script check first (certain for
Arabic, and most text here is Arabic), py3langid only for what those cannot settle."""

from __future__ import annotations

import re

_NOT_ARABIC = re.compile(r"[^\u0600-\u06ff\u0750-\u077f]+")
_NOT_LETTER = re.compile(r"[\W\d_]+")
_ARABIC_SCRIPT = ("ar", "fa", "ur", "ps", "ku")  # languages written in the Arabic script
SCRIPT_SAMPLE = 240  # characters: plenty to tell the script
SAMPLE = 600  # characters for py3langid; the long tail only costs time


def detect_language(text: str, declared: str = "") -> str:
    """ISO 639-1 code; a feed's declared language wins when the text agrees with its script.

    The script is counted with two substitutions over a short sample (C loops, no per-character
    Python objects): the share of Arabic-script letters among all letters."""
    sample = text[:SCRIPT_SAMPLE]
    declared2 = (declared or "")[:2].lower()
    letters = len(_NOT_LETTER.sub("", sample))
    if not letters:
        return declared2
    arabic = len(_NOT_ARABIC.sub("", sample))
    if arabic * 2 > letters:
        # Persian and Urdu share the script; trust a declaration of those, else Arabic.
        return declared2 if declared2 in _ARABIC_SCRIPT[1:] else "ar"
    if declared2 and declared2 != "ar":
        return declared2
    import py3langid  # loaded lazily: the model takes a moment and most text here is Arabic

    code, _ = py3langid.classify(text[:SAMPLE])
    return code
