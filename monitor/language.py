"""Language of an article: script first (cheap and certain for Arabic), py3langid otherwise."""

from __future__ import annotations

import re

_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f]")
_LETTER = re.compile(r"[^\W\d_]")


def detect_language(text: str, declared: str = "") -> str:
    """ISO 639-1 code; a feed's declared language wins when the text agrees with its script."""
    sample = text[:600]  # enough to tell the script; the long tail only costs time
    letters = len(_LETTER.findall(sample))
    if not letters:
        return (declared or "")[:2].lower()
    arabic = len(_ARABIC.findall(sample))
    declared2 = (declared or "")[:2].lower()
    if arabic / letters > 0.5:
        # Persian and Urdu share the script; trust a declaration of those, else Arabic.
        return declared2 if declared2 in ("fa", "ur", "ps", "ku") else "ar"
    if declared2 and declared2 != "ar":
        return declared2
    import py3langid  # loaded lazily: the model takes a moment and most text here is Arabic

    code, _ = py3langid.classify(sample)
    return code
