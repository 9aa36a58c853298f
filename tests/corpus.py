"""Real test data from ../shared/data (never copied into the repo): ANT articles, the seed.

Tests that need it skip with a clear reason when the folder is absent."""

from __future__ import annotations

import html
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

import os


def _shared() -> Path:
    """../shared beside the checkout; RAQIB_SHARED or the workplace's copy for clones elsewhere."""
    for candidate in (os.environ.get("RAQIB_SHARED"), Path(__file__).resolve().parents[2] / "shared",
                      "/work/shared"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _shared()
DATA = SHARED / "data"
ANT = DATA / "antcorpus-multisource"
TOPICAL = ANT / "topical_subset"
SEEDS = SHARED / "seeds"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not present: {path} (see ../shared/data/README.md)")
    return path


@dataclass(frozen=True)
class AntDoc:
    docno: str
    url: str
    source: str
    category: str
    title: str
    time: str
    abstract: str
    text: str


_TAG = {t: re.compile(rf"<{t}>(.*?)</{t}>", re.S) for t in
        ("DOCNO", "URL", "SRC", "CAT", "TITLE", "TIME", "ABSTRACT", "TEXT")}


def parse_ant(raw: str) -> AntDoc:
    def g(t: str) -> str:
        m = _TAG[t].search(raw)
        return m.group(1).strip() if m else ""

    return AntDoc(g("DOCNO"), g("URL"), g("SRC"), g("CAT"), g("TITLE"), g("TIME"), g("ABSTRACT"), g("TEXT"))


def topical_docs() -> list[AntDoc]:
    need(TOPICAL)
    return [parse_ant(p.read_text(encoding="utf-8")) for p in sorted(TOPICAL.rglob("*.txt"))
            if p.name != "FILES.txt"]


def all_docs(limit: int | None = None) -> Iterator[AntDoc]:
    """Every article of the ANT v2.1 archive (31.5k), streamed from the .tar.xz."""
    archive = need(ANT / "antcorpus.multisource.v2.1.tar.xz")
    n = 0
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".txt"):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            yield parse_ant(f.read().decode("utf-8", "replace"))
            n += 1
            if limit and n >= limit:
                return


def seed_text() -> str:
    files = sorted(need(SEEDS).glob("*.txt"))
    return files[0].read_text(encoding="utf-8")


def rss_item(title: str, link: str, description: str, pub: str = "", guid: str | None = None,
             content: str | None = None) -> str:
    parts = [f"<title>{html.escape(title)}</title>", f"<link>{html.escape(link)}</link>",
             f"<guid isPermaLink=\"false\">{html.escape(guid or link)}</guid>",
             f"<description>{html.escape(description)}</description>"]
    if pub:
        parts.append(f"<pubDate>{pub}</pubDate>")
    if content:
        parts.append(f"<content:encoded>{html.escape(content)}</content:encoded>")
    return "<item>" + "".join(parts) + "</item>"


def rss(items: list[str], title: str = "Test feed", encoding: str = "utf-8", language: str = "ar",
        declare: bool = True) -> bytes:
    prolog = f'<?xml version="1.0" encoding="{encoding}"?>' if declare else '<?xml version="1.0"?>'
    doc = (f'{prolog}<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
           f"<channel><title>{html.escape(title)}</title><link>http://example.org/</link>"
           f"<description>test</description><language>{language}</language>"
           + "".join(items) + "</channel></rss>")
    return doc.encode(encoding, "xmlcharrefreplace")


def ant_item(doc: AntDoc, full_text: bool = True) -> str:
    try:
        pub = format_datetime(parsedate_to_datetime(doc.time))
    except (TypeError, ValueError):
        pub = ""
    return rss_item(doc.title, doc.url, doc.abstract, pub, guid=doc.docno,
                    content=doc.text if full_text else None)
