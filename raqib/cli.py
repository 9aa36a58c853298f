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
    p = ssub.add_parser("list", help="list subscriptions")
    _common(p)
    p = ssub.add_parser("remove", help="remove a subscription")
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
                   "index": cmd_index, "web": cmd_web, "tokens": cmd_tokens}[args.command]
        return handler(args, config)
    except ConfigError as e:
        print(f"raqib: configuration error: {e}", file=sys.stderr)
        return 2
    except QueryError as e:
        print(f"raqib: bad query: {e}", file=sys.stderr)
        return 2
    except RaqibError as e:
        print(f"raqib: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file or directory the user named cannot be used: their words
        where = f": {e.filename}" if e.filename else ""
        print(f"raqib: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _need_feeds(config) -> None:
    if not any(f.enabled for f in config.feeds):
        raise ConfigError(f"{config.config_dir / 'feeds.yaml'}: no enabled feed: at least one feed is needed")


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

    feeds = [f for f in config.feeds if f.enabled]
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

    store = Store(config.data_dir / "raqib.db")
    try:
        check_query(config, args.query, store.sources())
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
    print(f"{page.total} articles")
    for h in page.hits:
        a = h.article
        print(_display(args, f"\n{a.published:%Y-%m-%d %H:%M} · {a.source} · {', '.join(a.topics) or '-'}"))
        print(_display(args, h.highlights.get("title", a.title)))
        print(_display(args, h.snippet))
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


def cmd_subscriptions(args, config) -> int:
    from alerts import subscriptions as subs
    from monitor.store import Store

    store = Store(config.data_dir / "raqib.db")
    try:
        managed = {c.id for c in config.alerts.subscriptions}  # alerts.yaml is the truth for its own
        if args.action == "list":
            rows = subs.load_all(store)
            if args.json:
                print(json.dumps([s.__dict__ for s in rows], ensure_ascii=False, default=list))
            for s in [] if args.json else rows:
                extra = (f" throttle={s.throttle_max}/{int(s.throttle_per or 3600)}s" if s.throttle_max else "") + (
                    f" digest={s.digest_minutes:g}min" if s.digest_minutes else "")
                print(_display(args, f"{s.id}\t{s.query}\t→ {', '.join(s.channels)}{extra}\t({s.origin})"))
            return 0
        existing = {s.id: s for s in subs.load_all(store)}
        mine = existing.get(args.id)
        if args.id in managed or (mine is not None and mine.origin == "file"):
            print(f"raqib: subscription {args.id!r} is defined in alerts.yaml; change it there",
                  file=sys.stderr)
            return 2
        if args.action == "remove":
            if not subs.remove(store, args.id):
                print(f"raqib: no subscription {args.id!r}", file=sys.stderr)
                return 1
            print(f"removed {args.id}")
            return 0
        # add
        if mine is not None and not args.replace:
            print(f"raqib: subscription {args.id!r} exists ({mine.query}); use --replace to replace it",
                  file=sys.stderr)
            return 2
        check_query(config, args.query)
        unknown = [c for c in args.channel if c not in config.alerts.channels]
        if unknown:
            raise ConfigError(f"unknown channel {unknown[0]!r}; channels in alerts.yaml: "
                              f"{', '.join(config.alerts.channels) or 'none'}")
        tmax, tper = _checked_schedule(args)
        page = asyncio.run(_preview(config, args.query))
        print(f"{page.total} stored articles match {args.query!r}" + (":" if page.hits else "."))
        stored = store.count()
        if stored >= BROAD_RULE_MIN_STORED and page.total > BROAD_RULE_SHARE * stored:
            print(f"raqib: warning: this rule matches {page.total / stored:.0%} of the stored articles and would "
                  "alert on as large a share of new ones; narrow it (more words, a phrase, a filter)", file=sys.stderr)
        if page.total:
            print("(a new subscription alerts only on articles stored from now on)")
        for h in page.hits:
            print(_display(args, f"  {h.article.published:%Y-%m-%d} {h.article.source}: {h.highlights.get('title')}"))
        if args.dry_run:
            return 0
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
        subs.save(store, subs.Subscription(args.id, args.name or args.id, args.query, tuple(args.channel),
                                           tmax, tper, args.digest, "cli", args.backfill))
        print(f"saved {args.id}")
        return 0
    finally:
        store.close()


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
    index = _open_index(config)
    try:
        return await index.search(query, limit=5, sort="date")
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


def _feed_rows(config) -> list[dict]:
    """Configured feeds with what the store remembers of them (stable keys for --json)."""
    from monitor.store import Store

    store = Store(config.data_dir / "raqib.db")
    try:
        states = store.feed_states()
    finally:
        store.close()
    now = datetime.now(UTC)
    rows = []
    for f in config.feeds:
        st = states.get(f.url)
        when = lambda dt: dt.isoformat(timespec="seconds") if dt else None  # noqa: E731
        rows.append({
            "id": f.id, "url": f.url, "enabled": f.enabled,
            "last_poll": when(st and st.last_fetched), "last_new": when(st and st.last_new),
            "errors_in_a_row": st.error_count if st else 0, "last_error": (st.last_error if st else None),
            "backing_off_until": when(st.next_due) if st and st.error_count and st.next_due and st.next_due > now
            else None,
            "next_due": when(st and st.next_due),
            "interval_seconds": round(st.interval) if st and st.interval else None})
    return rows


def cmd_feeds(args, config) -> int:
    if args.action == "list":
        rows = _feed_rows(config)
        failing = 1 if any(r["errors_in_a_row"] for r in rows) else 0
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return failing
        from rich.console import Console
        from rich.table import Table

        t = Table("feed", "last poll", "errors", "next due", "last error")
        for r in rows:
            t.add_row(r["id"] + ("" if r["enabled"] else " (disabled)"), r["last_poll"] or "never",
                      str(r["errors_in_a_row"]), r["next_due"] or "at start", (r["last_error"] or "")[:80])
        Console().print(t)
        return failing
    return _feeds_check(args, config)


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
                return await asyncio.gather(*(check(f, fetcher, workers) for f in config.feeds))
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


