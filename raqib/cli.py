"""`raqib` command line. Every command takes --config DIR and --data-dir DIR.

Exit status: 0 success, 1 a runtime failure (e.g. every feed failed), 2 bad configuration or
usage (one clear message, no traceback)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from monitor.errors import ConfigError, IndexError_, QueryError, RaqibError
from monitor.hits import hit_json
from monitor.models import Mark
from raqib import __version__


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """Options every command takes, before or after the command name (like git or docker).
    Below the top level they default to SUPPRESS, so a value given before the command stays."""
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--config", metavar="DIR", default=d(None),
                   help="configuration directory (default: $RAQIB_CONFIG or ./config)")
    p.add_argument("--data-dir", metavar="DIR", default=d(None),
                   help="where the database lives (default: data_dir in raqib.yaml, or $RAQIB_DATA_DIR)")
    p.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    p.add_argument("--quiet", action="store_true", default=d(False),
                   help="only warnings and errors; no progress display")
    p.add_argument("--verbose", action="store_true", default=d(False), help="debug logging")
    p.add_argument("--bidi", action="store_true", default=d(False),
                   help="reorder Arabic for terminals without bidirectional text support")


EPILOG = """exit status: 0 done; 1 some work failed (a feed in once / feeds check / feeds list,
articles still refused by reindex, a refused data-dir lock);
2 bad usage, configuration or query; 70 internal error (RAQIB_DEBUG=1 shows the
traceback); 141 output pipe closed."""


class _Parser(argparse.ArgumentParser):
    """Every option of Raqib is `--long` (and -h): a word starting with a single dash is a
    positional value, so `raqib search -كورسك` searches for "without كورسك"."""

    def _parse_optional(self, arg_string):  # type: ignore[override]
        if arg_string.startswith("-") and not arg_string.startswith("--") and arg_string != "-h":
            return None
        return super()._parse_optional(arg_string)

    def error(self, message: str):  # type: ignore[override]
        """One line, not the whole usage text."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _bounded(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}")
        return n
    parse.__name__ = "number"
    return parse


def _highlight_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--highlight", choices=["auto", "color", "brackets", "none"], default="auto",
                   help="how matches are shown: auto = colour on a terminal, [brackets] in a pipe "
                        "or with NO_COLOR; none = unmarked (--json gives offsets instead)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="raqib", description="Raqib (رقيب): monitor Arabic news feeds "
                                 "for tracked topics; search them; get alerts.", epilog=EPILOG)
    ap.add_argument("--version", action="version", version=f"raqib {__version__}")
    _common(ap, top=True)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the monitoring service until SIGINT/SIGTERM")
    _common(p)
    p = sub.add_parser("once", help="poll every feed once, index, alert, exit (for cron and tests); "
                                   "exit 1 when a feed failed")
    _common(p)
    p.add_argument("--force", action="store_true",
                   help="poll every feed now, also those backing off after errors (this run only)")
    p = sub.add_parser("search", help="search stored articles (query language: see README)")
    _common(p)
    p.add_argument("query")
    p.add_argument("--limit", type=_bounded(1, 1000), default=10, help="results per page, 1-1000")
    p.add_argument("--cursor", help="continue from a previous page's next_cursor")
    p.add_argument("--sort", choices=["relevance", "date"], default="relevance")
    _highlight_option(p)
    p = sub.add_parser("trends", help="article counts per topic per day or hour")
    _common(p)
    p.add_argument("query", nargs="?", default=None)
    p.add_argument("--interval", choices=["day", "hour"], default="day")
    p = sub.add_parser("tag", help="tag text with topics, without fetching")
    _common(p)
    p.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    p.add_argument("--jsonl", action="store_true",
                   help='each input line is {"id", "title"?, "text"}; one JSON result per line')
    ps = sub.add_parser("subscriptions", help="manage alert subscriptions")
    _common(ps)
    ssub = ps.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ssub.add_parser("add", help="preview a query on stored articles, then save it as a subscription")
    _common(p)
    p.add_argument("id")
    p.add_argument("query")
    p.add_argument("--channel", action="append", required=True, help="channel name from alerts.yaml (repeatable)")
    p.add_argument("--name", default="")
    p.add_argument("--throttle", metavar="N/SECONDS", help="at most N messages per SECONDS, e.g. 10/3600")
    p.add_argument("--digest", type=float, default=0, metavar="MINUTES", help="one message every MINUTES")
    p.add_argument("--dry-run", action="store_true", help="only show what it would have matched")
    p.add_argument("--backfill", action="store_true",
                   help="also alert on feeds' back catalogue and on articles older than alerts.max_age")
    p.add_argument("--yes", action="store_true", help="save without asking (needed when stdin is not a terminal)")
    p.add_argument("--replace", action="store_true", help="replace an existing subscription with this id")
    _highlight_option(p)
    p = ssub.add_parser("list", help="list subscriptions")
    _common(p)
    p = ssub.add_parser("remove", help="remove a subscription")
    _common(p)
    p.add_argument("id")
    for action, what in (("pause", "stop alerting (matches meanwhile are not alerted)"), ("resume", "alert again")):
        p = ssub.add_parser(action, help=f"{what}")
        _common(p)
        p.add_argument("id")
    p = sub.add_parser("web", help="serve the web app and API alone over a data dir (read side, no poller)")
    _common(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default: web.listen)")

    pt = sub.add_parser("tokens", help="API tokens (needed for the API off loopback)")
    _common(pt)
    tsub = pt.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("create", help="create a token; it is shown once, only its hash is kept")
    _common(p)
    p.add_argument("--scope", choices=["read", "admin"], required=True)
    p.add_argument("--name", default="", help="what the token is for")
    p = tsub.add_parser("list", help="tokens with scope, creation, last use (never the token)")
    _common(p)
    p = tsub.add_parser("revoke", help="revoke a token by its id")
    _common(p)
    p.add_argument("id")

    pi = sub.add_parser("index", help="index operations")
    _common(pi)
    isub = pi.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = isub.add_parser("status", help="backend health, document counts, queue and outbox backlog")
    _common(p)
    p = isub.add_parser("reindex", help="rebuild the index from the article store")
    _common(p)
    p.add_argument("--batch", type=_bounded(1, 10_000), default=500)
    pf = sub.add_parser("feeds", help="feed tools")
    _common(pf)
    fsub = pf.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = fsub.add_parser("list", help="each feed's state: last poll, errors, back-off, next due")
    _common(p)
    p = fsub.add_parser("check", help="fetch and parse each feed once; print a status table")
    _common(p)
    p = fsub.add_parser("add", help="add a feed (kept in the database; feeds.yaml's are changed there)")
    _common(p)
    p.add_argument("id")
    p.add_argument("url")
    p.add_argument("--name", default="")
    p.add_argument("--language", default="")
    p.add_argument("--interval", type=float, default=None, metavar="SECONDS", help="fixed poll interval")
    p.add_argument("--disabled", action="store_true", help="add it without polling it yet")
    p.add_argument("--replace", action="store_true", help="replace an existing feed with this id or url")
    for action, what in (("remove", "remove a feed (its articles stay searchable)"),
                         ("enable", "poll a feed again"), ("disable", "stop polling a feed")):
        p = fsub.add_parser(action, help=what)
        _common(p)
        p.add_argument("id")
    p = fsub.add_parser("import", help="add the feeds of an OPML file; each one refused is named with why")
    _common(p)
    p.add_argument("file", help="OPML file, or - for stdin")
    p.add_argument("--replace", action="store_true", help="replace existing feeds with the same id or url")
    p = fsub.add_parser("export", help="write every feed as OPML")
    _common(p)
    p.add_argument("file", nargs="?", default="-", help="output file (default: stdout)")
    pd = sub.add_parser("db", help="database operations")
    _common(pd)
    dsub = pd.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dsub.add_parser("stats", help="articles (per feed, per topic, oldest, newest), file sizes, queues, outbox")
    _common(p)
    p = dsub.add_parser("prune", help="apply retention now (the service does it daily; for cron setups "
                                      "running `once`); refuses while a service holds the data dir")
    _common(p)
    p.add_argument("--days", type=_bounded(1, 36_500), default=None,
                   help="delete articles older than this (default: retention.days)")
    return ap


def _config(args):
    from monitor.config import load_config

    cdir = args.config or os.environ.get("RAQIB_CONFIG") or "config"
    return load_config(cdir, args.data_dir)


def _display(args, text: str) -> str:
    if getattr(args, "bidi", False):
        from bidi.algorithm import get_display

        return "\n".join(get_display(line) for line in text.split("\n"))
    return text


class _Marker:
    """Prints a line with its marks shown for the reader: bold colour on a terminal (query
    words yellow, topic mentions cyan), [brackets] in a pipe, or nothing. Never « »: Arabic
    text quotes with those itself."""

    def __init__(self, args) -> None:
        mode = getattr(args, "highlight", "auto")
        if mode == "auto":
            tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
            mode = "color" if tty and not args.bidi else "brackets"
        self.args, self.mode, self.console = args, mode, None
        if mode == "color":
            from rich.console import Console

            self.console = Console(highlight=False, soft_wrap=True, force_terminal=True)

    def __call__(self, text: str, marks, shift: int = 0) -> None:
        from monitor.highlight import render

        moved = [Mark(m.start + shift, m.end + shift, m.field, m.topic) for m in marks]
        if self.console is not None:
            from rich.text import Text

            t = Text(text)
            for m in moved:
                t.stylize("bold cyan" if m.topic else "bold yellow", m.start, m.end)
            self.console.print(t)
            return
        o, c = ("[", "]") if self.mode == "brackets" else ("", "")
        print(_display(self.args, render(text, moved, o, c)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except BrokenPipeError:
        # The reader went away (`raqib search … | head`): quiet, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("RAQIB_DEBUG"):
            raise
        print(f"raqib: internal error: {type(e).__name__}: {str(e)[:300]} "
              "(set RAQIB_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 70


def _main(args) -> int:
    try:
        if args.command == "tag":
            return cmd_tag(args)
        config = _config(args)
        from monitor.logs import setup_logging

        level = "DEBUG" if args.verbose else "WARNING" if args.quiet else config.settings.log.level
        setup_logging(level, config.settings.log.json_format)
        handler = {"run": cmd_run, "once": cmd_once, "search": cmd_search, "trends": cmd_trends,
                   "subscriptions": cmd_subscriptions, "feeds": cmd_feeds,
                   "index": cmd_index, "web": cmd_web, "tokens": cmd_tokens, "db": cmd_db}[args.command]
        return handler(args, config)
    except ConfigError as e:
        print(f"raqib: configuration error: {e}", file=sys.stderr)
        return 2
    except QueryError as e:
        print(f"raqib: bad query: {e}", file=sys.stderr)
        return 2
    except RaqibError as e:
        # feed-list and subscription changes say what kind of refusal it is (see feedlist)
        kind = getattr(e, "kind", "")
        hint = "; use --replace to replace it" if kind == "exists" else ""
        print(f"raqib: {e}{hint}", file=sys.stderr)
        return 2 if kind in ("invalid", "exists", "managed") else 1
    except OSError as e:  # a file or directory the user named cannot be used: their words
        where = f": {e.filename}" if e.filename else ""
        print(f"raqib: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _store(config):
    from monitor.store import Store

    return Store(config.data_dir / "raqib.db")


def _feeds(config) -> list:
    """The feeds a start would poll: feeds.yaml ∪ those added in the database."""
    from monitor import feedlist

    store = _store(config)
    try:
        return feedlist.effective(store, config.feeds)
    finally:
        store.close()


def _need_feeds(config) -> None:
    if not any(f.enabled for f in _feeds(config)):
        raise ConfigError(f"{config.config_dir / 'feeds.yaml'}: no enabled feed, there or in the database "
                          "(`raqib feeds add`): at least one feed is needed")


def cmd_run(args, config) -> int:
    from raqib.service import Service

    _need_feeds(config)

    asyncio.run(Service(config).run())
    return 0


def cmd_web(args, config) -> int:
    from raqib.web.server import serve_alone

    if args.listen:
        from dataclasses import replace as dc_replace

        from monitor.config import WebSettings

        try:
            web = WebSettings(listen=args.listen, enabled=True,
                              require_tokens=config.settings.web.require_tokens)
        except ValueError as e:
            raise ConfigError(f"--listen: {e.errors()[0]['msg'] if hasattr(e, 'errors') else e}") from None
        config = dc_replace(config, settings=config.settings.model_copy(update={"web": web}))
    asyncio.run(serve_alone(config))
    return 0


def cmd_tokens(args, config) -> int:
    from monitor.store import Store
    from raqib.web import tokens

    store = Store(config.data_dir / "raqib.db")
    try:
        if args.action == "create":
            token_id, token = tokens.create(store, args.scope, args.name)
            if args.json:
                print(json.dumps({"id": token_id, "scope": args.scope, "name": args.name, "token": token}))
            else:
                print(token)
                print(f"token {token_id} ({args.scope}) created; it is shown only now, keep it safe",
                      file=sys.stderr)
            return 0
        if args.action == "list":
            rows = tokens.listing(store)
            if args.json:
                print(json.dumps([t.json() for t in rows]))
            else:
                for t in rows:
                    j = t.json()
                    state = f"revoked {j['revoked']}" if t.revoked else f"last used {j['last_used'] or 'never'}"
                    print(f"{t.id}\t{t.scope}\t{j['created']}\t{state}\t{t.name}")
            return 0
        if not tokens.revoke(store, args.id):
            print(f"raqib: no live token with id {args.id!r}", file=sys.stderr)
            return 1
        print(f"token {args.id} revoked")
        return 0
    finally:
        store.close()


def cmd_once(args, config) -> int:
    from raqib.service import run_once

    _need_feeds(config)

    feeds = [f for f in _feeds(config) if f.enabled]
    if sys.stderr.isatty() and not args.quiet:
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("polling feeds", total=len(feeds))
            reports, drained, delivered = asyncio.run(
                run_once(config, lambda r: progress.advance(task), force=args.force))
    else:
        reports, drained, delivered = asyncio.run(run_once(config, force=args.force))
    by = {}
    for r in reports:
        by[r.status] = by.get(r.status, 0) + 1
    # A feed still backing off from an earlier failure was not polled: not a new failure.
    failed = [{"id": r.feed_id, "url": r.url, "status": r.status, "error": r.error}
              for r in reports if r.status in ("error", "retry-later")]
    summary = {"feeds": len(reports), **by, "new": sum(r.new for r in reports),
               "updated": sum(r.updated for r in reports), "indexed": drained.indexed,
               "alerts_queued": drained.alerts, "alert_messages_sent": delivered.messages,
               "alert_failures": delivered.failures, "failed": failed}
    print(json.dumps(summary, ensure_ascii=False))
    return 1 if failed else 0


def _open_index(config):
    from indexers.factory import make_index
    from monitor.store import Store

    Store(config.data_dir / "raqib.db").close()  # creates the schema on first use
    return make_index(config, config.data_dir / "raqib.db")


def check_query(config, query: str, stored_sources=()) -> None:
    """Refuse a query naming a topic or source that does not exist (it would find nothing,
    silently). Sources still in the store count, so old feeds' articles stay reachable."""
    from monitor.query import parse, validate

    validate(parse(query), [t.id for t in config.topics], [f.id for f in config.feeds] + list(stored_sources))


def cmd_search(args, config) -> int:
    from monitor.store import Store

    from alerts.subscriptions import known_sources

    store = Store(config.data_dir / "raqib.db")
    try:
        check_query(config, args.query, known_sources(config, store))
    finally:
        store.close()

    async def go():
        index = _open_index(config)
        try:
            return await index.search(args.query, limit=args.limit, cursor=args.cursor, sort=args.sort)
        finally:
            await index.close()

    page = asyncio.run(go())
    if args.json:
        print(json.dumps({
            "total": page.total, "next_cursor": page.next_cursor,
            "hits": [hit_json(h) for h in page.hits]},
            ensure_ascii=False, indent=2))
        return 0
    print(f"{page.total} article{'' if page.total == 1 else 's'}")
    show = _Marker(args)
    for h in page.hits:
        a = h.article
        print(_display(args, f"\n{a.published:%Y-%m-%d %H:%M} · {a.source} · {', '.join(a.topics) or '-'}"))
        show(a.title, h.title_marks)
        s = h.snippet
        if s.text and not (s.field == "title" and s.text == a.title):
            show(("…" if s.cut_start else "") + s.text + ("…" if s.cut_end else ""), s.marks,
                 shift=1 if s.cut_start else 0)
        print(a.link)
    if page.next_cursor:
        print(f"\nmore: --cursor {page.next_cursor}")
    return 0


def cmd_trends(args, config) -> int:
    async def go():
        index = _open_index(config)
        try:
            return await index.trends(args.query, interval=args.interval)
        finally:
            await index.close()

    from raqib.trends import asked_topics, series

    times, counts = series(asyncio.run(go()), args.interval, asked_topics(args.query))
    fmt = "%Y-%m-%d %H:00" if args.interval == "hour" else "%Y-%m-%d"
    if args.json:  # {"interval", "buckets": [iso…], "topics": {id: [count per bucket]}}
        print(json.dumps({"interval": args.interval, "buckets": [t.isoformat() for t in times],
                          "topics": counts}))
    else:
        print("\t".join([args.interval, *counts]))
        for i, t in enumerate(times):
            print("\t".join([f"{t:{fmt}}", *(str(c[i]) for c in counts.values())]))
    return 0


def cmd_tag(args) -> int:
    from monitor.config import load_config
    from monitor.topics import build_tagger

    cdir = args.config or os.environ.get("RAQIB_CONFIG") or "config"
    try:
        tagger = build_tagger(load_config(cdir, args.data_dir).topics)
    except ConfigError as e:
        print(f"raqib: configuration error: {e}", file=sys.stderr)
        return 2
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    with stream:
        if not args.jsonl:
            text = stream.read()
            topics, matches = tagger.tag(text)
            print(json.dumps({"topics": list(topics), "matches": [
                {"topic": m.topic, "start": m.start, "end": m.end, "text": m.text} for m in matches]},
                ensure_ascii=False))
            return 0
        status = 0
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict) or "text" not in doc or "id" not in doc:
                    raise ValueError('each line needs an object with "id" and "text"')
                title = doc.get("title") or ""
                text = f"{title}\n{doc['text']}" if title else doc["text"]
            except ValueError as e:
                print(f"raqib: line {n}: {e}", file=sys.stderr)
                status = 2
                continue
            topics, matches = tagger.tag(text)
            print(json.dumps({"id": doc["id"], "topics": list(topics), "matches": [
                {"topic": m.topic, "start": m.start, "end": m.end, "text": m.text} for m in matches]},
                ensure_ascii=False), flush=True)
        return status


BROAD_RULE_SHARE = 0.05  # `subscriptions add` warns above this share of the stored articles
BROAD_RULE_MIN_STORED = 100  # ... once there are enough articles for a share to mean something


def _may_replace(args, what: str) -> bool:
    """Overwriting needs --replace, or a yes on a terminal; a pipe never consents."""
    if args.replace:
        return True
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{what} exists; replace it? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_subscriptions(args, config) -> int:
    from alerts import subscriptions as subs

    store = _store(config)
    try:
        if args.action == "list":
            rows = subs.load_all(store)
            if args.json:
                print(json.dumps([subs.as_dict(s) for s in rows], ensure_ascii=False))
            for s in [] if args.json else rows:
                extra = (f" throttle={s.throttle_max}/{int(s.throttle_per or 3600)}s" if s.throttle_max else "") + (
                    f" digest={s.digest_minutes:g}min" if s.digest_minutes else "") + (" PAUSED" if s.paused else "")
                print(_display(args, f"{s.id}\t{s.query}\t→ {', '.join(s.channels)}{extra}\t({s.origin})"))
            return 0
        if args.action == "remove":
            subs.delete(config, store, args.id)
            print(f"removed {args.id}")
            return 0
        if args.action in ("pause", "resume"):
            subs.set_paused(config, store, args.id, args.action == "pause")
            print(f"{args.action}d {args.id}")
            return 0
        return _subscription_add(args, config, store)
    finally:
        store.close()


def _subscription_add(args, config, store) -> int:
    from alerts import subscriptions as subs

    tmax, tper = _checked_schedule(args)
    values = {"id": args.id, "query": args.query, "channels": args.channel, "name": args.name,
              "throttle": {"max": tmax, "per": tper} if tmax else None, "digest_minutes": args.digest,
              "backfill": args.backfill}
    exists = bool(subs.load_all(store, [args.id]))
    subs.refuse_managed(config, store, args.id, "change")
    if exists and not args.replace and (args.yes or not sys.stdin.isatty()):
        raise subs.SubscriptionError("exists", f"subscription {args.id!r} exists ({subs.get(store, args.id).query})")
    subs.validated(config, values, subs.known_sources(config, store))
    page = asyncio.run(_preview(config, args.query))
    print(f"{page.total} stored articles match {args.query!r}" + (":" if page.hits else "."))
    stored = store.count()
    if stored >= BROAD_RULE_MIN_STORED and page.total > BROAD_RULE_SHARE * stored:
        print(f"raqib: warning: this rule matches {page.total / stored:.0%} of the stored articles and would "
              "alert on as large a share of new ones; narrow it (more words, a phrase, a filter)", file=sys.stderr)
    if page.total:
        print("(a new subscription alerts only on articles stored from now on)")
    show = _Marker(args)
    for h in page.hits:
        show(f"  {h.article.published:%Y-%m-%d} {h.article.source}: {h.article.title}", h.title_marks,
             shift=len(f"  {h.article.published:%Y-%m-%d} {h.article.source}: "))
    if args.dry_run:
        return 0
    if exists and not _may_replace(args, f"subscription {args.id!r}"):
        print("not saved")
        return 1
    if not args.yes:
        if not sys.stdin.isatty():  # a piped "n" or nothing at all is no consent
            print("raqib: not saved: stdin is not a terminal; add --yes to save", file=sys.stderr)
            return 2
        try:
            answer = input("save this subscription? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not saved")
            return 1
    subs.create(config, store, values, "cli", replace=exists)
    print(f"saved {args.id}")
    return 0


def _checked_schedule(args) -> tuple[int | None, float | None]:
    """--throttle and --digest under the same bounds as alerts.yaml (one model checks both)."""
    from pydantic import ValidationError

    from monitor.config import SubscriptionConfig

    throttle = None
    if args.throttle:
        a, _, b = args.throttle.partition("/")
        throttle = {"max": a, "per": b or 3600}
    try:
        c = SubscriptionConfig(id="x", query="x", channels=("x",), throttle=throttle, digest_minutes=args.digest)
    except ValidationError as e:
        err = e.errors()[0]
        what = "--digest" if err["loc"][0] == "digest_minutes" else "--throttle"
        raise ConfigError(f"{what}: {err['msg'].removeprefix('Value error, ')} "
                          "(e.g. --throttle 10/3600, --digest 60)") from None
    return (c.throttle.max, c.throttle.per) if c.throttle else (None, None)


async def _preview(config, query):
    from alerts.subscriptions import preview

    index = _open_index(config)
    try:
        return await preview(index, query)
    finally:
        await index.close()


def cmd_index(args, config) -> int:
    from alerts import outbox
    from raqib.pipeline import drain_index
    from monitor.store import Store

    store = Store(config.data_dir / "raqib.db")

    async def db(fn, *a):
        return fn(*a)

    async def status():
        index = _open_index(config)
        try:
            health = await index.health()
            return {"backend": config.settings.index.backend, "health": health,
                    "indexed_documents": await index.count(), "stored_articles": store.count(),
                    **store.queue_counts(), "outbox": outbox.backlog(store),
                    "dead_letters": [{"article": a, "error": e, "attempts": n}
                                     for a, e, n in store.dead_letters()]}
        finally:
            await index.close()

    async def reindex():
        # Every article goes back in the index queue (dead letters too) and the queue is worked
        # off here; a service running meanwhile helps drain it, and nothing is indexed twice
        # for long: the flags record what the index holds.
        index = _open_index(config)
        if hasattr(index, "clear"):  # the embedded index starts from nothing
            try:
                await index.clear()
            except IndexError_:
                pass  # the service holds the writer: it reindexes the queue (the drain says so)
        total = store.requeue_for_index()
        try:
            from rich.progress import Progress

            done, error = 0, ""
            with Progress(disable=not sys.stderr.isatty()) as progress:
                task = progress.add_task("reindexing", total=total)
                while True:
                    n, error = await drain_index(db, store, index, args.batch)
                    done += n
                    progress.update(task, completed=done)
                    left = store.queue_counts()["waiting_to_index"]
                    if not n or not left:
                        break
        finally:
            await index.close()
        return done, error, store.queue_counts()

    try:
        if args.action == "status":
            st = asyncio.run(status())
            if args.json:
                print(json.dumps(st, ensure_ascii=False, default=str))
            else:
                _print_status(st)
            return 0
        n, error, counts = asyncio.run(reindex())
        print(f"reindexed {n} articles")
        if counts["waiting_to_index"] or counts["index_dead_letters"]:
            print(f"raqib: {counts['waiting_to_index']} articles still waiting, "
                  f"{counts['index_dead_letters']} refused: {error}", file=sys.stderr)
            return 1
        return 0
    finally:
        store.close()


def _print_status(st: dict) -> None:
    """`index status` for people: one aligned line per fact, nested facts indented."""
    def show(key: str, value, indent: str = "") -> None:
        label = key.replace("_", " ")
        if isinstance(value, dict) and not value:
            print(f"{indent}{label + ':':<22}-")
        elif isinstance(value, dict):
            print(f"{indent}{label}:")
            for k, v in value.items():
                show(str(k), v, indent + "  ")
        elif isinstance(value, list | tuple):
            if key == "dead_letters":
                for d in value:
                    print(f"{indent}dead letter {d['article']} ({d['attempts']} attempts): {d['error']}")
            elif key != "problems" or value:
                print(f"{indent}{label + ':':<22}{', '.join(map(str, value)) or '-'}")
        else:
            print(f"{indent}{label + ':':<22}{value}")

    for k, v in st.items():
        show(k, v)


def cmd_feeds(args, config) -> int:
    if args.action == "check":
        return _feeds_check(args, config)
    from monitor import feedlist

    store = _store(config)
    try:
        feedlist.sync_from_config(store, config.feeds)  # what feeds.yaml says now is what is managed
        if args.action == "list":
            return _feeds_list(args, feedlist.status(store))
        if args.action == "add":
            values = {"id": args.id, "url": args.url, "name": args.name, "language": args.language,
                      "interval": args.interval, "enabled": not args.disabled}
            try:
                feedlist.add(store, values, "cli", replace=args.replace)
            except feedlist.FeedListError as e:
                if e.kind != "exists" or not _may_replace(args, f"feed {args.id!r}"):
                    raise
                feedlist.add(store, values, "cli", replace=True)
            print(f"added {args.id}")
        elif args.action == "remove":
            feedlist.remove(store, args.id)
            print(f"removed {args.id}")
        elif args.action in ("enable", "disable"):
            feedlist.set_enabled(store, args.id, args.action == "enable")
            print(f"{args.action}d {args.id}")
        elif args.action == "import":
            data = sys.stdin.buffer.read(feedlist.OPML_MAX_BYTES + 1) if args.file == "-" else _read_capped(
                args.file, feedlist.OPML_MAX_BYTES + 1)
            report = feedlist.import_opml(store, data, "opml", replace=args.replace)
            if args.json:
                print(json.dumps(report.as_dict(), ensure_ascii=False))
            else:
                print(f"added {len(report.added)}, replaced {len(report.replaced)}, skipped {len(report.skipped)}")
                for line in report.skipped:
                    print(f"raqib: skipped {line}", file=sys.stderr)
            return 1 if report.skipped else 0
        elif args.action == "export":
            data = feedlist.export_opml(store)
            if args.file == "-":
                sys.stdout.buffer.write(data)
            else:
                with open(args.file, "wb") as f:
                    f.write(data)
        return 0
    finally:
        store.close()


def _prune(args, config) -> int:
    from monitor import retention
    from monitor.lock import DataDirLock

    days = args.days or config.settings.retention.days
    if not days:
        raise ConfigError("retention.days is 0 (keep forever); give --days N to prune anyway")

    async def db(fn, *a):
        return fn(*a)

    async def go():
        index = _open_index(config)
        store = _store(config)
        try:
            return await retention.apply(db, store, index, days)
        finally:
            await index.close()
            store.close()

    with DataDirLock(config.data_dir, "db prune"):  # the index has one writer: the service's
        rep = asyncio.run(go())
    print(json.dumps({"articles_deleted": rep.articles, "alerts_deleted": rep.alerts,
                      "compacted": rep.compacted or None, "error": rep.error or None}))
    return 1 if rep.error else 0


def _read_capped(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _feeds_list(args, rows: list[dict]) -> int:
    failing = 1 if any(r["errors_in_a_row"] for r in rows) else 0
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return failing
    from rich.console import Console
    from rich.table import Table

    t = Table("feed", "origin", "last poll", "articles", "errors", "next due", "last error")
    for r in rows:
        t.add_row(r["id"] + ("" if r["enabled"] else " (disabled)"), r["managed_by"] or r["origin"],
                  r["last_poll"] or "never", str(r["articles"]), str(r["errors_in_a_row"]),
                  r["next_due"] or "at start", (r["last_error"] or "")[:80])
    Console().print(t)
    return failing


def cmd_db(args, config) -> int:
    """`raqib db stats`: what is stored, how big the files are, what is waiting;
    `raqib db prune`: retention now."""
    if args.action == "prune":
        return _prune(args, config)
    store = _store(config)
    try:
        st = store.stats()
    finally:
        store.close()
    files = {p.name: p.stat().st_size for p in sorted(config.data_dir.glob("raqib.db*")) if p.is_file()}
    index_dir = config.data_dir / "index"
    if index_dir.is_dir():
        files["index/"] = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    st["files"] = files
    st["retention_days"] = config.settings.retention.days
    if args.json:
        print(json.dumps(st, ensure_ascii=False))
    else:
        _print_status(st)
    return 0


def _feeds_check(args, config) -> int:
    from monitor.fetcher import Fetcher
    from raqib.pipeline import ParseWorkers, fetch_settings

    async def check(feed, fetcher, workers):
        started = asyncio.get_running_loop().time()
        row = {"id": feed.id, "url": feed.url, "status": "", "items": 0, "encoding": "", "seconds": 0.0}
        try:
            res = await fetcher.fetch(feed.url)
            row["status"] = f"HTTP {res.status}"
            parsed = await workers.parse(res.body or b"", res.headers, feed, datetime.now(UTC))
            row.update(items=len(parsed.articles), encoding=parsed.encoding)
            if parsed.warnings:
                row["status"] += " (malformed: " + parsed.warnings[0][:60] + ")"
        except RaqibError as e:
            row["status"] = f"error: {getattr(e, 'reason', e)}"
        except Exception as e:  # one feed never stops the check of the others
            row["status"] = f"error: {type(e).__name__}: {e}"
        row["seconds"] = round(asyncio.get_running_loop().time() - started, 2)
        return row

    async def go():
        # Parsed in worker processes, as the service does: same memory cap, deadline, isolation.
        workers = ParseWorkers.from_config(config)
        try:
            async with Fetcher(fetch_settings(config)) as fetcher:
                return await asyncio.gather(*(check(f, fetcher, workers) for f in _feeds(config)))
        finally:
            workers.shutdown(wait=True, cancel_futures=True)

    rows = asyncio.run(go())
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table("feed", "status", "items", "encoding", "time (s)")
        for r in rows:
            t.add_row(r["id"], r["status"], str(r["items"]), r["encoding"], f"{r['seconds']:.2f}")
        Console().print(t)
    return 1 if any(r["status"].startswith("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())


