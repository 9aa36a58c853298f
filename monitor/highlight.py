"""Marks the words a query matched in the ORIGINAL text (diacritics, clitics and all)."""

from __future__ import annotations

from collections.abc import Collection

from monitor.arabic import MARKS_RE, WORD_RE, forms

OPEN, CLOSE = "«", "»"


def spans(text: str, keys: Collection[str], first_only: bool = False) -> list[tuple[int, int]]:
    """(start, end) of every word of `text` that answers to one of `keys`.

    The text is normalized once and scanned word by word (forms() is cached), rather than
    normalizing each word: a long article costs one pass."""
    if not keys:
        return []
    from monitor.tagger import _normalize_with_map  # the same offset map the tagger uses

    norm, to_orig = _normalize_with_map(text)
    out = []
    n = len(text)
    for m in WORD_RE.finditer(norm):
        if any(f in keys for f in forms(m.group())):
            s, e = to_orig(m.start()), to_orig(m.end() - 1) + 1
            while e < n and MARKS_RE.match(text, e):
                e += 1
            out.append((s, e))
            if first_only:
                break
    return out


def highlight(text: str, keys: Collection[str], open_: str = OPEN, close: str = CLOSE) -> str:
    out, last = [], 0
    for s, e in spans(text, keys):
        out += [text[last:s], open_, text[s:e], close]
        last = e
    out.append(text[last:])
    return "".join(out)


def snippet(text: str, keys: Collection[str], width: int = 240, open_: str = OPEN,
            close: str = CLOSE) -> str:
    """A window of about `width` characters around the first match, matches marked."""
    found = spans(text, keys, first_only=True)
    if not found:
        cut = text[:width]
        return cut + ("…" if len(text) > width else "")
    first = found[0][0]
    start = max(0, first - width // 3)
    # start and end on word boundaries so no word is cut in half
    if start > 0:
        sp = text.rfind(" ", 0, start)
        start = sp + 1 if sp >= 0 and start - sp < 30 else start
    end = min(len(text), start + width)
    if end < len(text):
        sp = text.find(" ", end)
        end = sp if 0 <= sp < end + 30 else end
    window = text[start:end]
    marked = highlight(window, keys, open_, close)
    return ("…" if start > 0 else "") + marked.strip() + ("…" if end < len(text) else "")
