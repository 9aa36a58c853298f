"""Server-rendered pages (RTL-correct, Arabic and English, usable without JavaScript).

Handlers stay thin: they call the same functions the CLI and the API call (the index's search
and trends, raqib.trends, the store, alerts.subscriptions) and hand plain values to Jinja2
templates with autoescape on. Everything a feed provides is escaped and shown inside a
direction-isolated element (dir="auto"), so hostile markup is text and a bidi override cannot
reorder the page around it. A strict Content-Security-Policy (no inline script, no inline
style, nothing from another host) is sent with every page.

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
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape

from monitor.errors import QueryError
from monitor.highlight import CLOSE, OPEN
from monitor.hits import hit_json
from raqib.web import auth, i18n

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                  trim_blocks=True, lstrip_blocks=True)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
SESSION_COOKIE = "raqib_session"
SESSION_TTL = 12 * 3600
MAX_SESSIONS = 10_000
PAGE_SIZE = 20
ARTICLE_CHARS = 60_000  # an article page stays well under 200 KB however long the feed's text
OUTBOX_ROWS = 200
DASHBOARD_SAMPLE = 200
_SID_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_SUB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
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
    web = getattr(ctx.config.settings, "web", None)
    return bool(getattr(web, "tokens_required", False))


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
    def may_read(self) -> bool:
        return self.scope is not None or not _tokens_required(self.ctx)

    @property
    def may_admin(self) -> bool:
        return self.scope == "admin" or (self.scope is None and not _tokens_required(self.ctx))


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
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _cookie(resp: Response, p: Page, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                    secure=p.request.url.scheme == "https")


def _finish(resp: Response, p: Page) -> Response:
    resp.headers.update(SECURITY_HEADERS)
    if p.fresh_sid:
        _cookie(resp, p, SESSION_COOKIE, p.sid)
    return resp


def render(p: Page, template: str, status: int = 200, **values) -> Response:
    nav = [("/search", "nav.search"), ("/topics", "nav.topics"), ("/feeds", "nav.feeds"),
           ("/subscriptions", "nav.subscriptions"), ("/alerts", "nav.alerts")]
    html = env.get_template(template).render(
        p=p, t=p.t, lang=p.lang, dir=i18n.direction(p.lang), nav=nav, path=p.request.url.path,
        here=str(p.request.url.path) + (f"?{p.request.url.query}" if p.request.url.query else ""),
        logged_in=p.scope is not None, tokens_required=_tokens_required(p.ctx), **values)
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
    return redirect(p, "/login?" + urlencode({"next": _local(str(p.request.url.path))}))


async def _posted(request: Request, admin: bool = False) -> tuple[Page, Any, Response | None]:
    """The page, its posted form, and (when it is refused) the page saying why: a bad CSRF
    token, no login on a server that needs one, or (`admin`) a read-only token."""
    p = await page_of(request)
    form = await request.form()
    if admin and not p.may_read:
        return p, form, _gate(p)
    if not _csrf_ok(p, form):
        return p, form, render(p, "message.html", 403, message=p.t("error.csrf"))
    if admin and not p.may_admin:
        return p, form, render(p, "message.html", 403, message=p.t("error.forbidden"))
    return p, form, None


# ------------------------------------------------------------------ rendering helpers

def clean(text: str | None) -> str:
    """Feed text for display: bidi embedding/override/isolate controls removed."""
    return (text or "").translate(_BIDI_CONTROLS)


def marked(text: str | None) -> Markup:
    """A highlighted string («…» around each match, as the index returns it) as escaped HTML
    with <mark> elements; everything else in it is text."""
    out, depth = [], 0
    for part in re.split(f"([{OPEN}{CLOSE}])", clean(text)):
        if part == OPEN:
            out.append("<mark>")
            depth += 1
        elif part == CLOSE and depth:
            out.append("</mark>")
            depth -= 1
        elif part:
            out.append(str(escape(part)))
    out += ["</mark>"] * depth
    return Markup("".join(out))


def spans_html(text: str, matches, offset: int = 0, topic_index: dict[str, int] | None = None) -> Markup:
    """`text` as escaped HTML with each tagged span (match offsets into a longer string that
    starts `offset` characters before `text`) in a <mark> classed by its topic."""
    topic_index = topic_index or {}
    out, last = [], 0
    for m in sorted(matches, key=lambda m: (m.start, -m.end)):
        s, e = m.start - offset, m.end - offset
        if s < last or e > len(text) or s >= e:
            continue  # overlapping, or outside this part
        out.append(str(escape(clean(text[last:s]))))
        out.append(f'<mark class="topic t{topic_index.get(m.topic, 0) % 6}" title="{escape(m.topic)}">'
                   f"{escape(clean(text[s:e]))}</mark>")
        last = e
    out.append(str(escape(clean(text[last:]))))
    return Markup("".join(out))


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
    ticks = [bars[i] for i in sorted({0, n // 2, n - 1})] if n else []
    return {"width": width, "height": height, "base": base, "bars": bars, "top": top, "ticks": ticks}


env.filters.update(marked=marked, clean=clean)
env.globals.update(safe_link=safe_link)


def _check_query(ctx, q: str, sources) -> None:
    from raqib.cli import check_query  # one validation for CLI, API and pages

    check_query(ctx.config, q, sources)


# ------------------------------------------------------------------ pages

@router.get("/")
async def home(request: Request) -> Response:
    p = await page_of(request)
    return redirect(p, "/search")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600",
                                       "X-Content-Type-Options": "nosniff"})


@router.get("/search")
async def search_page(request: Request, q: str = "", cursor: str | None = None,
                      sort: str = "relevance") -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    ctx = p.ctx
    sort = sort if sort in ("relevance", "date") else "relevance"
    error, result = None, None
    q = q.strip()
    if q:
        try:
            _check_query(ctx, q, await ctx.db(ctx.store.sources))
            page = await ctx.index.search(q, limit=PAGE_SIZE, cursor=cursor or None, sort=sort)
            result = {"total": page.total, "hits": [hit_json(h) for h in page.hits],
                      "next": ("/search?" + urlencode({"q": q, "sort": sort, "cursor": page.next_cursor})
                               if page.next_cursor else None)}
        except QueryError as e:
            error = p.t("error.query", detail=str(e))
        except Exception as e:  # a bad cursor and the like: one line, never a traceback page
            if type(e).__name__ not in ("ConfigError", "ValueError"):
                raise
            error = p.t("error.query", detail=str(e))
    topics = [t.id for t in ctx.config.topics]
    return render(p, "search.html", 400 if error else 200, q=q, sort=sort, error=error, result=result,
                  topics=topics)


@router.get("/articles/{article_id}")
async def article_page(request: Request, article_id: str) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    a = await p.ctx.db(p.ctx.store.get, article_id)
    if a is None:
        return render(p, "message.html", 404, message=p.t("article.notfound"))
    order = {t.id: i for i, t in enumerate(p.ctx.config.topics)}
    body = a.body
    truncated = len(body) > ARTICLE_CHARS
    mentions = Counter(m.topic for m in a.matches)
    return render(p, "article.html", a=a, link=safe_link(a.link), truncated=truncated,
                  title_html=spans_html(a.title, a.matches, 0, order),
                  body_html=spans_html(body[:ARTICLE_CHARS], a.matches, len(a.title) + 1, order),
                  mentions=[(t, mentions[t], order.get(t, 0) % 6) for t in a.topics])


@router.get("/topics")
async def topics_page(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    return render(p, "topics.html", topics=p.ctx.config.topics)


@router.get("/topics/{topic_id}")
async def topic_page(request: Request, topic_id: str) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    topic = next((t for t in p.ctx.config.topics if t.id == topic_id), None)
    if topic is None:
        return render(p, "message.html", 404, message=p.t("topic.unknown"))
    from raqib.trends import series

    q = f"topic:{topic_id}"
    times, counts = series(await p.ctx.index.trends(q, interval="day"), "day", {topic_id})
    latest = await p.ctx.index.search(q, limit=DASHBOARD_SAMPLE, sort="date")
    sources = Counter(h.article.source for h in latest.hits).most_common(10)
    return render(p, "topic.html", topic=topic, total=latest.total,
                  chart=chart(times[-90:], counts.get(topic_id, [])[-90:]),
                  sources=sources, sample=len(latest.hits),
                  latest=[hit_json(h) for h in latest.hits[:10]], query=q)


@router.get("/feeds")
async def feeds_page(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    return await _feeds(p)


async def _feeds(p: Page, notice: str | None = None, status: int = 200) -> Response:
    from raqib.cli import _feed_rows  # the rows `raqib feeds list` prints

    rows = await asyncio.to_thread(_feed_rows, p.ctx.config)
    return render(p, "feeds.html", status, rows=rows, notice=notice, read_only=p.ctx.read_only)


@router.post("/feeds/{feed_id}/poll")
async def feed_poll(request: Request, feed_id: str) -> Response:
    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    feed = next((f for f in p.ctx.config.feeds if f.id == feed_id), None)
    if feed is None:
        return render(p, "message.html", 404, message=p.t("error.notfound"))
    if p.ctx.pipeline is None:
        return await _feeds(p, p.t("feeds.readonly"), 409)
    report = await p.ctx.pipeline.poll(feed)
    return await _feeds(p, p.t("feeds.polled", id=feed.id, status=report.status))


# ------------------------------------------------------------------ subscriptions and alerts

async def _preview(p: Page, q: str) -> dict:
    """What the editor shows under the query: how many stored articles it would have matched,
    with the newest few (the same preview `raqib subscriptions add` prints)."""
    if not q:
        return {}
    try:
        _check_query(p.ctx, q, await p.ctx.db(p.ctx.store.sources))
        page = await p.ctx.index.search(q, limit=5, sort="date")
    except QueryError as e:
        return {"error": p.t("error.query", detail=str(e))}
    except Exception as e:
        if type(e).__name__ != "ConfigError":
            raise
        return {"error": p.t("error.query", detail=str(e))}
    return {"total": page.total, "hits": [hit_json(h) for h in page.hits]}


async def _subscriptions(p: Page, form: dict | None = None, preview: dict | None = None,
                         notice: str | None = None, error: str | None = None, status: int = 200) -> Response:
    from alerts import subscriptions as subs

    rows = await p.ctx.db(subs.load_all, p.ctx.store)
    return render(p, "subscriptions.html", status, rows=rows, form=form or {}, preview=preview or {},
                  notice=notice, error=error, channels=list(p.ctx.config.alerts.channels))


@router.get("/subscriptions")
async def subscriptions_page(request: Request, q: str = "") -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    return await _subscriptions(p, {"query": q}, await _preview(p, q.strip()))


@router.get("/subscriptions/preview")
async def subscriptions_preview(request: Request, q: str = "") -> Response:
    """The preview alone, for the editor's script to swap in while the query is typed."""
    p = await page_of(request)
    if not p.may_read:
        return _finish(Response(status_code=401), p)
    html = env.get_template("_preview.html").render(t=p.t, preview=await _preview(p, q.strip()))
    return _finish(HTMLResponse(html), p)


@router.post("/subscriptions")
async def subscriptions_save(request: Request) -> Response:
    from alerts import subscriptions as subs

    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    values = {"id": str(form.get("id", "")).strip(), "query": str(form.get("query", "")).strip(),
              "channels": [str(c) for c in form.getlist("channels")]}
    preview = await _preview(p, values["query"])
    if form.get("action") == "preview" or preview.get("error"):
        return await _subscriptions(p, values, preview, status=400 if preview.get("error") else 200)
    existing = {s.id: s for s in await p.ctx.db(subs.load_all, p.ctx.store)}
    managed = {c.id for c in p.ctx.config.alerts.subscriptions}
    error = None
    if not _SUB_ID_RE.match(values["id"]):
        error = p.t("subs.bad_id")
    elif values["id"] in managed or getattr(existing.get(values["id"]), "origin", "") == "file":
        error = f"{values['id']}: {p.t('subs.file')}"
    elif values["id"] in existing:
        error = p.t("subs.exists", id=values["id"])
    elif not values["channels"] or any(c not in p.ctx.config.alerts.channels for c in values["channels"]):
        error = p.t("subs.no_channel")
    if error:
        return await _subscriptions(p, values, preview, error=error, status=400)
    await p.ctx.db(subs.save, p.ctx.store, subs.Subscription(
        values["id"], values["id"], values["query"], tuple(values["channels"]), origin="web"))
    return await _subscriptions(p, notice=p.t("subs.saved", id=values["id"]))


@router.post("/subscriptions/{sub_id}/remove")
async def subscriptions_remove(request: Request, sub_id: str) -> Response:
    from alerts import subscriptions as subs

    p, form, refused = await _posted(request, admin=True)
    if refused is not None:
        return refused
    if sub_id in {c.id for c in p.ctx.config.alerts.subscriptions}:
        return await _subscriptions(p, error=f"{sub_id}: {p.t('subs.file')}", status=400)
    await p.ctx.db(subs.remove, p.ctx.store, sub_id)
    return await _subscriptions(p, notice=p.t("subs.removed", id=sub_id))


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    p = await page_of(request)
    if (gate := _gate(p)) is not None:
        return gate
    rows = (await p.ctx.db(p.ctx.store.outbox_rows))[-OUTBOX_ROWS:][::-1]
    keys = ("delivery_id", "subscription", "article", "channel", "status", "attempts", "error", "sent")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for r in out:  # sent is epoch seconds (None until sent)
        r["sent"] = (datetime.fromtimestamp(r["sent"], UTC).strftime("%Y-%m-%d %H:%M:%S")
                     if isinstance(r["sent"], int | float) else "")
    return render(p, "alerts.html", rows=out)


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
