"""Server-rendered pages (RTL-correct, Arabic and English, usable without JavaScript).

Handlers stay thin: they call the functions the API and the CLI call (raqib.web.queries for
search, articles, trends and the outbox; monitor.feedlist and alerts.subscriptions for what
users manage, with their preview and poll-now) and hand plain values to Jinja2 templates with
autoescape on. Everything a feed provides is escaped, stripped of bidi embedding/override
controls and shown direction-isolated (dir="auto", <bdi>), so hostile markup is text and
cannot reorder the page around it. raqib.web.app sends the strict Content-Security-Policy
(no inline script or style, nothing from another host) with every page.

Sessions: every visitor gets a random session id cookie (HttpOnly, SameSite=Strict); the CSRF
token of every form is an HMAC of it, so a form posted from elsewhere, or without the cookie,
is refused. Logging in (with an API token, checked by raqib.web.auth.verify_token) rotates the
id and keeps the token server-side; it is checked again on every request, so revoking it ends
the session."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, pass_context
from markupsafe import Markup, escape

from alerts import subscriptions as subs
from monitor import feedlist
from monitor.errors import QueryError, RaqibError
from monitor.query import Or, parse
from raqib.web import auth, i18n, queries
from raqib.web.problems import Problem
from raqib.web.tokens import grants

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                  trim_blocks=True, lstrip_blocks=True)

SESSION_COOKIE = "raqib_session"
SESSION_TTL = 12 * 3600
MAX_SESSIONS = 10_000
PAGE_SIZE = 20
ARTICLE_CHARS = 60_000  # an article page stays well under 200 KB however long the feed's text
OUTBOX_ROWS = 100
CHART_DAYS = 90
OPML_MAX = 1_000_000
FACET_QUERY_MAX = 500  # longer queries get no facet links (each repeats the query): pages stay small
# A path on this server: "/" not followed by another slash or a backslash (browsers read "/\x"
# and, after dropping tabs, "/<tab>/x" as a host), and no whitespace or control characters.
_LOCAL_RE = re.compile(r"^/(?![/\\])[^\s\x00-\x1f\x7f\\]*$")
_SID_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
# Explicit embeddings, overrides and isolates: a feed's text shows inside its own isolate, so
# these could only make it unreadable; the marks that shape Arabic text (ALM, RLM) stay.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


# ------------------------------------------------------------------ sessions and CSRF

@dataclass
class Sessions:
    """Logged-in sessions, in memory (a restart logs everyone out): id → (token, expiry)."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    logged: dict[str, tuple[str, float]] = field(default_factory=dict)

    def csrf(self, sid: str) -> str:
        return hmac.new(self.secret, b"csrf\0" + sid.encode(), hashlib.sha256).hexdigest()

    def login(self, token: str) -> str:
        now = time.time()
        if len(self.logged) >= MAX_SESSIONS:
            self.logged = {k: v for k, v in self.logged.items() if v[1] > now}
            while len(self.logged) >= MAX_SESSIONS:
                self.logged.pop(next(iter(self.logged)))
        sid = secrets.token_urlsafe(32)
        self.logged[sid] = (token, now + SESSION_TTL)
        return sid

    def token(self, sid: str) -> str | None:
        row = self.logged.get(sid)
        if row is None:
            return None
        if row[1] < time.time():
            self.logged.pop(sid, None)
            return None
        return row[0]


def _sessions(request: Request) -> Sessions:
    state = request.app.state
    if not hasattr(state, "page_sessions"):
        state.page_sessions = Sessions()
    return state.page_sessions


def _tokens_required(ctx) -> bool:
    return ctx.config.settings.web.tokens_required


@dataclass
class Page:
    """What every page handler knows about the request: language, session, scope."""

    request: Request
    ctx: Any
    lang: str
    sid: str
    fresh_sid: bool
    scope: str | None  # from a logged-in session
    csrf: str

    @property
    def t(self):
        return i18n.translator(self.lang)

    @property
    def here(self) -> str:
        """This page's path and query: where the login and the language switch come back to."""
        url = self.request.url
        return url.path + (f"?{url.query}" if url.query else "")

    @property
    def may_read(self) -> bool:
        return self.scope is not None or not _tokens_required(self.ctx)

    @property
    def may_admin(self) -> bool:
        """Like the API: a logged-in read token may not change things, even on loopback."""
        if self.scope is not None:
            return grants(self.scope, "admin")
        return not _tokens_required(self.ctx)


async def page_of(request: Request) -> Page:
    ctx = request.app.state.ctx
    sessions = _sessions(request)
    sid = request.cookies.get(SESSION_COOKIE, "")
    fresh = not _SID_RE.match(sid)
    if fresh:
        sid = secrets.token_urlsafe(32)
    scope = None
    token = sessions.token(sid)
    if token is not None:
        # in a thread: verify_token may block on the web side's store thread
        scope = await asyncio.to_thread(auth.verify_token, ctx, token)
        if scope is None:
            sessions.logged.pop(sid, None)  # revoked: the session ends with it
        else:
            request.state.scope = scope  # the API's require_scope honours the session too
    lang = i18n.pick(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
    return Page(request, ctx, lang, sid, fresh, scope, sessions.csrf(sid))


def _csrf_ok(p: Page, form) -> bool:
    return not p.fresh_sid and hmac.compare_digest(str(form.get("csrf", "")), p.csrf)


def _local(target: str | None, default: str = "/search") -> str:
    """Only a path on this server (never //host or a scheme) is a redirect target."""
    if not target or not _LOCAL_RE.match(target):
        return default
    return target


def _cookie(resp: Response, p: Page, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                    secure=p.request.url.scheme == "https")


def _finish(resp: Response, p: Page) -> Response:
    """The session cookie on a first visit (the CSP and other headers come from raqib.web.app)."""
    if p.fresh_sid:
        _cookie(resp, p, SESSION_COOKIE, p.sid)
    return resp


def render(p: Page, template: str, status: int = 200, **values) -> Response:
    nav = [("/search", "nav.search"), ("/topics", "nav.topics"), ("/feeds", "nav.feeds"),
           ("/subscriptions", "nav.subscriptions"), ("/alerts", "nav.alerts")]
    html = env.get_template(template).render(
        p=p, t=p.t, lang=p.lang, dir=i18n.direction(p.lang), nav=nav, path=p.request.url.path,
        here=p.here,
        logged_in=p.scope is not None, tokens_required=_tokens_required(p.ctx),
        topic_class={t.id: i for i, t in enumerate(p.ctx.config.topics)}, **values)
    return _finish(HTMLResponse(html, status_code=status), p)


def redirect(p: Page, to: str, cookie: tuple[str, str, int | None] | None = None) -> Response:
    resp = _finish(RedirectResponse(to, status_code=303), p)
    if cookie:
        _cookie(resp, p, *cookie)
    return resp


def _gate(p: Page) -> Response | None:
    """A login redirect when this server needs a token and the visitor has none."""
    if p.may_read:
        return None
    return redirect(p, "/login?" + urlencode({"next": _local(p.here)}))


async def _posted(request: Request, admin: bool = False) -> tuple[Page, Any, Response | None]:
    """The page, its posted form, and (when it is refused) the page saying why: a bad CSRF
    token, no login on a server that needs one, or (`admin`) a read-only token."""
    p = await page_of(request)
    if admin and not p.may_read:  # before reading the body: an anonymous upload is not parsed
        return p, {}, _gate(p)
    form = await request.form()
    if not _csrf_ok(p, form):
        return p, form, render(p, "message.html", 403, message=p.t("error.csrf"))
    if admin and not p.may_admin:
        return p, form, render(p, "message.html", 403, message=p.t("error.forbidden"))
    return p, form, None


# ------------------------------------------------------------------ rendering helpers

def clean(text: str | None) -> str:
    """Feed text for display: bidi embedding/override/isolate controls removed."""
    return (text or "").translate(_BIDI_CONTROLS)


def _span(m) -> tuple[int, int, str | None]:
    """(start, end, topic) of a mark from hit_json or queries.article (dicts)."""
    return m["start"], m["end"], m.get("topic")


def spans_html(text: str | None, marks=(), offset: int = 0, topic_class: dict[str, int] | None = None) -> Markup:
    """`text` as escaped HTML with each mark in a <mark> element: a tagged span (it has a topic)
    coloured by its topic, a query word plain. Marks are offsets into a string that starts
    `offset` characters before `text` (0 for hit_json's marks; the title's length + 1 for the
    body, since the tagger's offsets index title + "\\n" + body). Overlaps keep the first."""
    text = text or ""
    out, last = [], 0
    for s, e, topic in sorted((_span(m) for m in marks), key=lambda x: (x[0], -x[1])):
        s, e = s - offset, e - offset
        if s < last or e > len(text) or s >= e:
            continue  # overlapping, or outside this part
        out.append(str(escape(clean(text[last:s]))))
        if topic:
            out.append(f'<mark class="topic t{(topic_class or {}).get(topic, 0) % 6}" title="{escape(topic)}">')
        else:
            out.append("<mark>")
        out.append(f"{escape(clean(text[s:e]))}</mark>")
        last = e
    out.append(str(escape(clean(text[last:]))))
    return Markup("".join(out))


@pass_context
def marked(context, text: str | None, marks=()) -> Markup:
    """The template filter: `h.title | marked(h.title_marks)`."""
    return spans_html(text, marks, 0, context.get("topic_class"))


def safe_link(url: str | None) -> str | None:
    """Only http(s) links are rendered as links (a javascript: or data: URL is shown as text)."""
    u = (url or "").strip()
    return u if re.match(r"^https?://", u, re.I) else None


def chart(times, counts: list[int], width: int = 720, height: int = 180) -> dict:
    """An SVG bar chart's geometry, computed here so the template only draws rects."""
    n = len(counts)
    top = max(counts, default=0) or 1
    pad, base = 24, height - 22
    slot = (width - 2 * pad) / max(n, 1)
    bars = []
    for i, (t, c) in enumerate(zip(times, counts, strict=True)):
        h = round((base - 8) * c / top, 1)
        bars.append({"x": round(pad + i * slot + slot * 0.1, 1), "y": round(base - h, 1),
                     "w": round(max(slot * 0.8, 1), 1), "h": h, "label": f"{t:%Y-%m-%d}", "count": c})
    ticks = []
    for i in sorted({0, n // 2, n - 1}) if n else ():
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        x = pad if i == 0 else width - pad if i == n - 1 else bars[i]["x"] + bars[i]["w"] / 2
        ticks.append({"x": round(x, 1), "label": bars[i]["label"], "anchor": anchor})
    return {"width": width, "height": height, "base": base, "bars": bars, "top": top, "ticks": ticks}


def when(iso: str | None) -> str:
    """An ISO timestamp as the pages show it: UTC to the minute ("–" for none)."""
    if not iso:
        return "–"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


env.filters.update(marked=marked, clean=clean, when=when)
env.globals.update(safe_link=safe_link)


async def _answer(p: Page, call):
    """(result, None), or (None, one line for the page) when the call refuses the user's input:
    a bad query, an unknown id, a duplicate; anything else is a server error and raises."""
    try:
        return await call, None
    except Problem as e:
        return None, e.detail or e.title
    except (QueryError, RaqibError) as e:
        return None, str(e)


def _refine(q: str, kind: str, value: str) -> str:
    """The query narrowed by one facet value (a link in the facet list)."""
    field = {"topic": "topic", "source": "source", "language": "lang", "day": "date"}[kind]
    if isinstance(parse(q), Or):  # AND binds tighter: `a OR b topic:x` would narrow only b
        q = f"({q})"
    return "/search?" + urlencode({"q": f"{q} {field}:{value}", "sort": "date"})


# ------------------------------------------------------------------ pages

@router.get("/")
async def home(request: Request) -> Response:
    p = await page_of(request)
    return redirect(p, "/search")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = STATIC / name
    try:
        found = "/" not in name and not name.startswith(".") and path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL
        found = False
    if not found:
        return Response(status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/search")
async def search_page(request: Request, q: str = "", cursor: str | None = None,
                      sort: str = "relevance") -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    sort = sort if sort in ("relevance", "date") else "relevance"
    q = q.strip()
    result, error, facets = None, None, {}
    if q:
        result, error = await _answer(p, queries.search(p.ctx, q, limit=PAGE_SIZE, cursor=cursor or None,
                                                        sort=sort, facets=True))
    if result and len(q) <= FACET_QUERY_MAX:  # each facet link repeats the query
        facets = {kind: [{"value": f["value"], "count": f["count"], "href": _refine(q, kind, f["value"])}
                         for f in values] for kind, values in result["facets"].items() if values}
    if result and result["next_cursor"]:
        result["next"] = "/search?" + urlencode({"q": q, "sort": sort, "cursor": result["next_cursor"]})
    return render(p, "search.html", 400 if error else 200, q=q, sort=sort, result=result, facets=facets,
                  error=error and p.t("error.query", detail=error), topics=[t.id for t in p.ctx.config.topics])


@router.get("/articles/{article_id}")
async def article_page(request: Request, article_id: str) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    a, error = await _answer(p, queries.article(p.ctx, article_id))
    if a is None:
        return render(p, "message.html", 404, message=p.t("article.notfound"))
    order = {t.id: i for i, t in enumerate(p.ctx.config.topics)}
    spans = a["spans"]
    body = a["text"][len(a["title"]) + 1:]
    mentions = Counter(m["topic"] for m in spans)
    return render(p, "article.html", a=a, link=safe_link(a["link"]), truncated=len(body) > ARTICLE_CHARS,
                  title_html=spans_html(a["title"], spans, 0, order),
                  body_html=spans_html(body[:ARTICLE_CHARS], spans, len(a["title"]) + 1, order),
                  mentions=[(t, mentions[t], order.get(t, 0) % 6) for t in a["topics"]])


@router.get("/topics")
async def topics_page(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    return render(p, "topics.html", topics=queries.topics(p.ctx))


@router.get("/topics/{topic_id}")
async def topic_page(request: Request, topic_id: str) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    topic = next((t for t in queries.topics(p.ctx) if t["id"] == topic_id), None)
    if topic is None:
        return render(p, "message.html", 404, message=p.t("topic.unknown"))
    q = f"topic:{topic_id}"
    trend = await queries.trends(p.ctx, q, "day")
    latest = await queries.search(p.ctx, q, limit=10, sort="date", facets=True)
    times = [datetime.fromisoformat(b) for b in trend["buckets"]][-CHART_DAYS:]
    return render(p, "topic.html", topic=topic, total=latest["total"], query=q,
                  chart=chart(times, trend["topics"].get(topic_id, [])[-CHART_DAYS:]),
                  sources=latest["facets"].get("source", []), latest=latest["hits"])


# ------------------------------------------------------------------ feeds

async def _feeds(p: Page, notice: str | None = None, error: str | None = None, status: int = 200,
                 form: dict | None = None) -> Response:
    rows = await p.ctx.db(feedlist.status, p.ctx.store)
    return render(p, "feeds.html", status, rows=rows, notice=notice, error=error, form=form or {},
                  read_only=p.ctx.read_only)


@router.get("/feeds")
async def feeds_page(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    return await _feeds(p)


@router.get("/feeds/export.opml")
async def feeds_export(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    data = await p.ctx.db(feedlist.export_opml, p.ctx.store)
    return _finish(Response(data, media_type="text/x-opml", headers={
        "Content-Disposition": 'attachment; filename="raqib-feeds.opml"'}), p)


@router.post("/feeds")
async def feeds_add(request: Request) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    values = {k: str(form.get(k, "")).strip() for k in ("id", "url", "name", "language")}
    _, error = await _answer(p, p.ctx.db(feedlist.add, p.ctx.store, {k: v for k, v in values.items() if v}, "web"))
    if error:
        return await _feeds(p, error=error, status=400, form=values)
    return await _feeds(p, p.t("feeds.added", id=values["id"]))


@router.post("/feeds/import")
async def feeds_import(request: Request) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    upload = form.get("opml")
    data = await upload.read(OPML_MAX + 1) if hasattr(upload, "read") else b""
    if not data or len(data) > OPML_MAX:
        return await _feeds(p, error=p.t("feeds.opml_bad"), status=400)
    report, error = await _answer(p, p.ctx.db(feedlist.import_opml, p.ctx.store, data, "opml", False))
    if error:
        return await _feeds(p, error=error, status=400)
    return await _feeds(p, p.t("feeds.imported", n=len(report.added)))


@router.post("/feeds/{feed_id}/remove")
async def feeds_remove(request: Request, feed_id: str) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    _, error = await _answer(p, p.ctx.db(feedlist.remove, p.ctx.store, feed_id))
    if error:
        return await _feeds(p, error=error, status=400)
    return await _feeds(p, p.t("feeds.removed", id=feed_id))


@router.post("/feeds/{feed_id}/poll")
async def feeds_poll(request: Request, feed_id: str) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    if p.ctx.pipeline is None:  # `raqib web`: the button is not shown, but a form can be posted
        return await _feeds(p, error=p.t("feeds.readonly"), status=409)
    report, error = await _answer(p, feedlist.poll_now(p.ctx.pipeline, feed_id))  # poll, index, match
    if error:
        return await _feeds(p, error=error, status=404)
    return await _feeds(p, p.t("feeds.polled", id=feed_id, status=report["status"]))


# ------------------------------------------------------------------ subscriptions and alerts

async def _preview(p: Page, q: str) -> dict:
    """What the editor shows under the query: how many stored articles it would have matched,
    with the newest few (the same preview the API and `raqib subscriptions add` give)."""
    if not q:
        return {}
    sources = await p.ctx.db(subs.known_sources, p.ctx.config, p.ctx.store)
    found, error = await _answer(p, subs.would_match(p.ctx.config, p.ctx.index, q, sources))
    return {"error": p.t("error.query", detail=error)} if error else found


async def _subscriptions(p: Page, form: dict | None = None, preview: dict | None = None,
                         notice: str | None = None, error: str | None = None, status: int = 200) -> Response:
    rows = await p.ctx.db(subs.load_all, p.ctx.store)
    return render(p, "subscriptions.html", status, rows=rows, form=form or {}, preview=preview or {},
                  notice=notice, error=error, channels=list(p.ctx.config.alerts.channels))


@router.get("/subscriptions")
async def subscriptions_page(request: Request, q: str = "", edit: str = "") -> Response:
    """The list and the editor; `edit=ID` opens an existing subscription in the editor."""
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    if edit:
        found = await p.ctx.db(subs.load_all, p.ctx.store, [edit[:200]])
        if not found or found[0].managed_by_file:
            return await _subscriptions(p, {"query": q}, await _preview(p, q.strip()),
                                        error=p.t("subs.not_editable", id=edit[:200]), status=404 if not found else 409)
        s = found[0]
        form = {"id": s.id, "query": s.query, "channels": list(s.channels), "replace": True}
        return await _subscriptions(p, form, await _preview(p, s.query))
    return await _subscriptions(p, {"query": q}, await _preview(p, q.strip()))


@router.get("/subscriptions/preview")
async def subscriptions_preview(request: Request, q: str = "") -> Response:
    """The preview alone, for the editor's script to swap in while the query is typed."""
    p = await page_of(request)
    if not p.may_read:
        return _finish(Response(status_code=401), p)
    html = env.get_template("_preview.html").render(
        t=p.t, preview=await _preview(p, q.strip()), topic_class={t.id: i for i, t in enumerate(p.ctx.config.topics)})
    return _finish(HTMLResponse(html), p)


@router.post("/subscriptions")
async def subscriptions_save(request: Request) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    values = {"id": str(form.get("id", "")).strip(), "query": str(form.get("query", "")).strip(),
              "channels": [str(c) for c in form.getlist("channels")]}
    replace = form.get("replace") == "1"  # the editor opened on an existing subscription
    preview = await _preview(p, values["query"])
    if form.get("action") == "preview" or preview.get("error"):
        return await _subscriptions(p, values | {"replace": replace}, preview,
                                    status=400 if preview.get("error") else 200)
    if not values["channels"]:
        return await _subscriptions(p, values | {"replace": replace}, preview, error=p.t("subs.no_channel"), status=400)
    _, error = await _answer(p, p.ctx.db(subs.create, p.ctx.config, p.ctx.store, values, "web", replace))
    if error:
        return await _subscriptions(p, values | {"replace": replace}, preview, error=error, status=400)
    return await _subscriptions(p, notice=p.t("subs.saved", id=values["id"]))


@router.post("/subscriptions/{sub_id}/remove")
async def subscriptions_remove(request: Request, sub_id: str) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    _, error = await _answer(p, p.ctx.db(subs.delete, p.ctx.config, p.ctx.store, sub_id))
    if error:
        return await _subscriptions(p, error=error, status=400)
    return await _subscriptions(p, notice=p.t("subs.removed", id=sub_id))


@router.post("/subscriptions/{sub_id}/{action}")
async def subscriptions_pause(request: Request, sub_id: str, action: str) -> Response:
    """Pause (matches meanwhile are not alerted) or resume; alerts.yaml's too, as in the API."""
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    if action not in ("pause", "resume"):
        return render(p, "message.html", 404, message=p.t("error.notfound"))
    _, error = await _answer(p, p.ctx.db(subs.set_paused, p.ctx.config, p.ctx.store, sub_id, action == "pause"))
    return await _subscriptions(p, error=error, status=400 if error else 200)


FILTER_CHOICES = 200


@router.get("/alerts")
async def alerts_page(request: Request, state: str = "all", before: int | None = None,
                      subscription: str = "") -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    log, error = await _answer(p, queries.outbox(p.ctx, state, OUTBOX_ROWS, before, subscription[:200] or None))
    if error:
        return render(p, "message.html", 400, message=error)
    keep = {"subscription": subscription[:200]} if subscription else {}
    more = ("/alerts?" + urlencode({"state": state, "before": log["next_before"], **keep})
            if log["next_before"] else None)
    ids = [s.id for s in await p.ctx.db(subs.load_all, p.ctx.store)]
    if len(ids) > FILTER_CHOICES:  # a page stays small: past this, the filter is a text field
        ids = []
    return render(p, "alerts.html", rows=log["items"], state=state, more=more,
                  states=queries.OUTBOX_STATES, subscription=subscription[:200], subscriptions=ids)


# ------------------------------------------------------------------ login, logout, language

@router.get("/login")
async def login_page(request: Request, next: str = "/search") -> Response:
    p = await page_of(request)
    return render(p, "login.html", next=_local(next))


@router.post("/login")
async def login(request: Request) -> Response:
    p = await page_of(request)
    form = await request.form()
    target = _local(str(form.get("next", "")))
    if not _csrf_ok(p, form):
        return render(p, "login.html", 403, next=target, error=p.t("error.csrf"))
    token = str(form.get("token", "")).strip()
    scope = await asyncio.to_thread(auth.verify_token, p.ctx, token) if token else None
    if scope is None:
        return render(p, "login.html", 401, next=target, error=p.t("login.bad"))
    sid = _sessions(request).login(token)  # a new id: a planted cookie never becomes a login
    return redirect(p, target, (SESSION_COOKIE, sid, None))


@router.post("/logout")
async def logout(request: Request) -> Response:
    p, form, refused = await _posted(request)
    if refused is not None:
        return refused
    _sessions(request).logged.pop(p.sid, None)
    return redirect(p, "/login", (SESSION_COOKIE, secrets.token_urlsafe(32), None))


@router.post("/lang")
async def switch_language(request: Request) -> Response:
    p, form, refused = await _posted(request)
    if refused is not None:
        return refused
    lang = str(form.get("lang", ""))
    cookie = (i18n.COOKIE, lang, 365 * 24 * 3600) if lang in i18n.LANGS else None
    return redirect(p, _local(str(form.get("next", ""))), cookie)
