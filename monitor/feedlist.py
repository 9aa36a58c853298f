"""The feed list: feeds live in the database; feeds.yaml is imported into it at every start.

What feeds.yaml defines is managed by the file (origin "file"): it cannot be edited, disabled or
removed anywhere else (a refusal naming the file), and taking it out of the file removes it on
the next start. The CLI, the API and the pages manage the rest (origin "cli" / "api") with the
plain functions below; every URL goes through FeedConfig's validation, as in feeds.yaml, and the
fetch address policy still applies when a poll connects. Each change bumps a counter
(`version`) the running service watches to schedule, unschedule and re-time jobs.

OPML is untrusted input: size-capped, parsed by lxml with DTDs, entities and network access
off (a DOCTYPE is refused outright), and every bad outline is one line in the report."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from monitor.config import FeedConfig
from monitor.errors import RaqibError
from monitor.store import Store

FILE = "feeds.yaml"
OPML_MAX_BYTES = 2 * 1024 * 1024
OPML_MAX_OUTLINES = 10_000


class FeedListError(RaqibError):
    """A feed-list change that cannot be made; `kind` lets the CLI and API pick an exit code or
    HTTP status: "invalid", "not-found", "exists", "managed"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Feed:
    config: FeedConfig
    origin: str  # "file" (feeds.yaml), "cli", "api", "opml"

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def managed_by_file(self) -> bool:
        return self.origin == "file"


def _row(f: FeedConfig, origin: str) -> tuple:
    return (f.id, f.url, f.name, f.language, f.interval, int(f.enabled), origin)


def load(store: Store) -> list[Feed]:
    """Every listed feed, by id."""
    out = []
    for r in store.feed_list_rows():
        cfg = FeedConfig.model_construct(id=r[0], url=r[1], name=r[2], language=r[3], interval=r[4],
                                         enabled=bool(r[5]))
        out.append(Feed(cfg, r[6]))
    return out


def enabled(store: Store) -> list[FeedConfig]:
    """The feeds to poll."""
    return [f.config for f in load(store) if f.config.enabled]


def version(store: Store) -> str:
    """Changes whenever a feed is added, edited, enabled, disabled or removed."""
    return store.meta_value("feeds_version")


def effective(store: Store, configured: Iterable[FeedConfig]) -> list[FeedConfig]:
    """feeds.yaml ∪ the database as the next start will see them (without writing): the file's
    feeds, then the database's own ones whose id and url the file does not take."""
    files = list(configured)
    ids, urls = {f.id for f in files}, {f.url for f in files}
    return files + [f.config for f in load(store)
                    if f.origin != "file" and f.id not in ids and f.config.url not in urls]


def sync_from_config(store: Store, configured: Iterable[FeedConfig]) -> None:
    """feeds.yaml is authoritative for the feeds it defines (a database feed with the same id
    or url is taken over); file feeds no longer in it are removed. Writes only on a change, so
    the service's version counter moves only when something did."""
    wanted = {f.id: f for f in configured}
    current = {f.id: f for f in load(store)}
    gone = [i for i, f in current.items() if f.origin == "file" and i not in wanted]
    changed = [f for i, f in wanted.items()
               if i not in current or current[i].origin != "file" or _row(current[i].config, "file") != _row(f, "file")]
    if gone or changed:
        store.save_feed_entries([_row(f, "file") for f in changed], remove=gone)


def validated(values: dict[str, Any]) -> FeedConfig:
    """A FeedConfig from user input, checked exactly as feeds.yaml is; one line when it is not."""
    try:
        return FeedConfig.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "feed"
        raise FeedListError("invalid", f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


def _refuse_managed(feed: Feed | None, what: str) -> None:
    if feed is not None and feed.managed_by_file:
        raise FeedListError("managed", f"feed {feed.id!r} is defined in {FILE}; {what} it there")


def _get(store: Store, feed_id: str) -> Feed:
    for f in load(store):
        if f.id == feed_id:
            return f
    raise FeedListError("not-found", f"no feed {feed_id!r}")


def add(store: Store, values: dict[str, Any], origin: str = "cli", replace: bool = False) -> Feed:
    """Add a feed (id, url, name, language, interval, enabled). An existing id, or another feed
    with this url, is replaced only with `replace`; a feeds.yaml feed never."""
    cfg = validated(values)
    feeds = load(store)
    same_id = next((f for f in feeds if f.id == cfg.id), None)
    same_url = next((f for f in feeds if f.config.url == cfg.url and f.id != cfg.id), None)
    _refuse_managed(same_id, "change")
    _refuse_managed(same_url, "change")
    if same_id and not replace:
        raise FeedListError("exists", f"feed {cfg.id!r} exists ({same_id.config.url})")
    if same_url and not replace:
        raise FeedListError("exists", f"feed {same_url.id!r} already polls this url")
    store.save_feed_entries([_row(cfg, origin)])
    return Feed(cfg, origin)


def edit(store: Store, feed_id: str, changes: dict[str, Any]) -> Feed:
    """Change some fields of a feed (not its id); validated as a whole."""
    feed = _get(store, feed_id)
    _refuse_managed(feed, "change")
    if "id" in changes and changes["id"] != feed_id:
        raise FeedListError("invalid", "id: a feed's id cannot change (its articles carry it); add a new feed")
    cfg = validated({**feed.config.model_dump(), **changes, "id": feed_id})
    other = next((f for f in load(store) if f.config.url == cfg.url and f.id != feed_id), None)
    if other:
        raise FeedListError("exists", f"feed {other.id!r} already polls this url")
    store.save_feed_entries([_row(cfg, feed.origin)])
    return Feed(cfg, feed.origin)


def set_enabled(store: Store, feed_id: str, on: bool) -> Feed:
    return edit(store, feed_id, {"enabled": on})


def remove(store: Store, feed_id: str) -> None:
    """Remove a feed from the list (its stored articles stay searchable)."""
    feed = _get(store, feed_id)
    _refuse_managed(feed, "remove")
    store.save_feed_entries([], remove=[feed_id])


async def poll_now(pipeline, feed_id: str) -> dict[str, Any]:
    """Poll one listed feed at once through the live pipeline (raqib.pipeline.Pipeline; the
    API's and the pages' "poll now"), then index and match what it brought."""
    feed = next((f for f in await pipeline.db(load, pipeline.store) if f.id == feed_id), None)
    if feed is None:
        raise FeedListError("not-found", f"no feed {feed_id!r}")
    report = await pipeline.poll(feed.config)
    await pipeline.drain()
    return {"id": report.feed_id, "status": report.status, "new": report.new, "updated": report.updated,
            "items": report.items, "error": report.error or None, "next_due": _when(report.next_due)}


# ------------------------------------------------------------------ status


def _when(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def status(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every listed feed with what the store remembers of it (the list behind `feeds list`,
    the API and the feeds page): last poll, its HTTP status and item count, errors, back-off,
    next due, articles stored."""
    now = now or datetime.now(UTC)
    states = store.feed_states()
    counts = store.articles_per_feed()
    rows = []
    for f in load(store):
        c, st = f.config, states.get(f.config.url)
        backing_off = bool(st and st.error_count and st.next_due and st.next_due > now)
        rows.append({
            "id": c.id, "url": c.url, "name": c.name, "language": c.language, "interval": c.interval,
            "enabled": c.enabled, "origin": f.origin, "managed_by": FILE if f.managed_by_file else None,
            "last_poll": _when(st.last_fetched if st else None), "last_new": _when(st.last_new if st else None),
            "http_status": st.last_status if st else None, "items": st.last_items if st else None,
            "errors_in_a_row": st.error_count if st else 0, "last_error": st.last_error if st else None,
            "backing_off_until": _when(st.next_due) if backing_off and st else None,
            "next_due": _when(st.next_due if st else None),
            "interval_seconds": round(st.interval) if st and st.interval else None,
            "articles": counts.get(c.url, 0)})
    return rows


# ------------------------------------------------------------------ OPML


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line each: why an outline was not taken

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "replaced": self.replaced, "skipped": self.skipped}


_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9_\-]+", "-", text.lower()).strip("-_")[:60]
    return s


def _parse_opml(data: bytes):
    from lxml import etree

    if len(data) > OPML_MAX_BYTES:
        raise FeedListError("invalid", f"OPML file is larger than {OPML_MAX_BYTES // 1024 // 1024} MB")
    if _DOCTYPE.search(data[:OPML_MAX_BYTES]):
        raise FeedListError("invalid", "OPML with a DOCTYPE or ENTITY declaration is refused")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise FeedListError("invalid", f"OPML is not well-formed XML: {str(e)[:200]}") from None
    if root is None or not isinstance(root.tag, str) or etree.QName(root).localname != "opml":
        raise FeedListError("invalid", "not an OPML document (the root element is not <opml>)")
    return root


def import_opml(store: Store, data: bytes, origin: str = "opml", replace: bool = False) -> ImportReport:
    """Add every `<outline xmlUrl=…>` as a feed (nested folders flattened). Ids come from the
    outline's text/title; a bad outline is skipped with one line saying why, the rest still go."""
    root = _parse_opml(data)
    report = ImportReport()
    outlines = [o for o in root.iter("{*}outline", "outline") if o.get("xmlUrl") is not None]
    if len(outlines) > OPML_MAX_OUTLINES:
        raise FeedListError("invalid", f"OPML has {len(outlines)} feeds; at most {OPML_MAX_OUTLINES} per import")
    existing = {f.id: f for f in load(store)}
    by_url = {f.config.url: f for f in existing.values()}
    rows, taken = [], set()
    for n, o in enumerate(outlines, 1):
        url = (o.get("xmlUrl") or "").strip()
        label = (o.get("text") or o.get("title") or "").strip()
        fid = _slug(o.get("id") or label or url.split("//", 1)[-1]) or f"feed-{n}"
        where = f"outline {n} ({label[:40] or fid})"
        try:
            cfg = validated({"id": fid[:100], "url": url, "name": label[:500],
                             "language": (o.get("language") or "")[:35],
                             "enabled": o.get("raqibEnabled") != "false"})
        except FeedListError as e:
            report.skipped.append(f"{where}: {e}")
            continue
        old = existing.get(cfg.id) or by_url.get(cfg.url)
        if cfg.id in taken:
            report.skipped.append(f"{where}: id {cfg.id!r} appears twice in this file")
            continue
        if old is not None and old.managed_by_file:
            report.skipped.append(f"{where}: feed {old.id!r} is defined in {FILE}")
            continue
        if old is not None and not replace:
            report.skipped.append(f"{where}: feed {old.id!r} exists (import with replace to overwrite)")
            continue
        taken.add(cfg.id)
        rows.append(_row(cfg, origin))
        (report.replaced if old is not None else report.added).append(cfg.id)
    if rows:
        store.save_feed_entries(rows)
    return report


def export_opml(store: Store, title: str = "Raqib feeds") -> bytes:
    """Every listed feed as OPML 2.0 (disabled ones too, marked with a raqib attribute)."""
    from lxml import etree

    opml = etree.Element("opml", version="2.0")
    head = etree.SubElement(opml, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    body = etree.SubElement(opml, "body")
    for f in load(store):
        c = f.config
        attrs = {"type": "rss", "text": c.name or c.id, "title": c.name or c.id, "xmlUrl": c.url, "id": c.id}
        if c.language:
            attrs["language"] = c.language
        if not c.enabled:
            attrs["raqibEnabled"] = "false"
        etree.SubElement(body, "outline", attrs)
    return etree.tostring(opml, xml_declaration=True, encoding="UTF-8", pretty_print=True)
