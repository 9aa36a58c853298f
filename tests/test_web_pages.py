"""The pages in a real browser (Debian's chromium driven by Playwright) against a real uvicorn
server over a real data dir: feeds served by a local feed server, polled, tagged and indexed by
`run_once`, alerts to a local webhook receiver. Every request the browser makes is checked to go
to the server under test and nowhere else."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from monitor.arabic import forms, query_key, tokens
from monitor.config import load_config
from alerts import subscriptions as subs
from tests.corpus import ant_item, rss, rss_item, seed_text, topical_docs
from tests.e2e_setup import write_config
from tests.feedserver import FeedServer
from raqib.web import tokens as api_tokens
from raqib.web.server import WebServer
from tests.receivers import free_port, running_receiver

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs"
HOSTILE_TITLE = ("الناتو <script>window.__pwned=1;alert(1)</script><img src=x onerror=alert(2)> "
                 "\u202eكورسك evil\u202c <b onmouseover=alert(3)>x</b>")
HOSTILE_BODY = ("نص عن الناتو " + "<svg onload=alert(4)></svg> <iframe src=javascript:alert(5)></iframe> "
                + "\u202e" + "طويل" * 400 + " " + "ا" * 3000)  # an unbreakable 3000-letter word
NEW_TITLE = "وزراء دفاع الناتو يجتمعون في بروكسل لبحث دعم أوكرانيا"


class Site:
    """A loop in a thread hosting the feed server, the webhook receiver and uvicorn."""

    def __init__(self, tmp: Path, showcase: bool = False):
        self.showcase = showcase  # the README's pictures: more articles, one feed per source, nothing hostile
        self.tmp = tmp
        self.servers: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self):
        from raqib.service import run_once

        self.feeds = await FeedServer().start()
        self._receiver_cm = running_receiver()
        self.receiver = await self._receiver_cm.__aenter__()
        docs = topical_docs()
        if self.showcase:
            return await self._showcase(docs)
        items = [rss_item("روتي: على الناتو التركيز على دعم أوكرانيا عسكريا", "https://example.org/nato-rutte",
                          seed_text(), "Tue, 03 Dec 2024 10:00:00 GMT", guid="seed-0001")]
        items += [ant_item(d, full_text=True) for d in docs[:40]]
        self.feeds.set_feed("/news.xml", rss(items, title="أخبار"))
        self.feeds.set_feed("/hostile.xml", rss([rss_item(
            HOSTILE_TITLE, "javascript:alert(6)", HOSTILE_BODY, "Tue, 03 Dec 2024 11:00:00 GMT", guid="hostile-1")]))
        self.feeds.set_status("/broken.xml", 500)
        self.live_items: list[str] = []
        self.feeds.set_feed("/live.xml", rss([rss_item("خبر محلي", "https://example.org/l0", "لا شيء هنا",
                                                       format_datetime(datetime.now(UTC)), guid="l0")]))
        cfg_dir = write_config(
            self.tmp,
            [("news", self.feeds.url("/news.xml")), ("hostile", self.feeds.url("/hostile.xml")),
             ("broken", self.feeds.url("/broken.xml")), ("live", self.feeds.url("/live.xml"))],
            channels={"hook": {"type": "webhook", "url": self.receiver.url, "secret_env": "RAQIB_PAGES_HOOK"}})
        os.environ["RAQIB_PAGES_HOOK"] = "pages-test-secret"
        self.config = load_config(cfg_dir)
        self.run_once = lambda: run_once(self.config)
        await self.run_once()
        self.web = await self.serve()
        self.ctx, self.url = self.web.ctx, self.web.url

    async def _showcase(self, docs):
        from raqib.service import run_once

        by_source: dict[str, list] = {}
        for d in docs[:400]:
            by_source.setdefault(re.sub(r"[^a-z0-9]+", "-", d.source.lower()).strip("-") or "misc", []).append(d)
        feeds = []
        for fid, ds in sorted(by_source.items(), key=lambda kv: -len(kv[1]))[:6]:
            self.feeds.set_feed(f"/{fid}.xml", rss([ant_item(d) for d in ds], title=fid))
            feeds.append((fid, self.feeds.url(f"/{fid}.xml")))
        self.feeds.set_status("/down.xml", 503)
        feeds.append(("down-feed", self.feeds.url("/down.xml")))
        self.config = load_config(write_config(
            self.tmp, feeds, channels={"desk": {"type": "log"}},
            subscriptions=[{"id": "kursk-desk", "query": "topic:kursk", "channels": ["desk"]}]))
        await run_once(self.config)
        self.web = await self.serve()
        self.ctx, self.url = self.web.ctx, self.web.url

    async def serve(self, pipeline=None, **web) -> WebServer:
        """The app as `raqib web` (no pipeline) or `raqib run` (with one) serves it."""
        settings = self.config.settings.model_copy(update={"web": self.config.settings.web.model_copy(
            update={"listen": f"127.0.0.1:{free_port()}", **web})})
        server = WebServer(dataclasses.replace(self.config, settings=settings))
        await server.start(pipeline)
        server.url = f"http://127.0.0.1:{server.port}"
        self.servers.add(f"127.0.0.1:{server.port}")  # where the browser may go
        return server

    async def stop(self):
        await self.web.stop()
        await self._receiver_cm.__aexit__(None, None, None)
        await self.feeds.stop()

    def publish_live(self, title: str, guid: str) -> None:
        """A new item on the live feed, published now (so it is news, not back catalogue)."""
        self.live_items.append(rss_item(title, f"https://example.org/{guid}", title + " — تفاصيل الخبر",
                                        format_datetime(datetime.now(UTC)), guid=guid))
        self.feeds.set_feed("/live.xml", rss(self.live_items))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    s = Site(tmp_path_factory.mktemp("pages"))
    try:
        s.call(s.start())
        yield s
    finally:
        try:
            if hasattr(s, "web"):
                s.call(s.stop())
        finally:
            s.loop.call_soon_threadsafe(s.loop.stop)
            s.thread.join(10)


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, site):
    """A fresh browser context whose every request is checked: only the server under test."""
    ctx = browser.new_context(locale="ar", extra_http_headers={"Accept-Language": "ar"},
                              viewport={"width": 1200, "height": 900})
    foreign: list[str] = []
    def guard(route):
        if urlsplit(route.request.url).netloc in site.servers:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    pg = ctx.new_page()
    pg.dialogs, pg.console_errors = [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    ctx.close()
    assert foreign == [], f"requests left the server: {foreign}"


def _get(site, path: str, **kw) -> httpx.Response:
    return httpx.get(site.url + path, follow_redirects=False, timeout=30, **kw)


def test_arabic_search_highlights_mentions_right_to_left(site, page):
    page.goto(f"{site.url}/search?q=الناتو")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    hits = page.locator("article.hit")
    assert hits.count() > 3
    marks = page.locator("article.hit mark:not(.topic)").all_inner_texts()  # the query's words
    assert marks, "no highlighted mentions"
    key = query_key("الناتو")
    assert all(any(key in forms(tok) for tok in tokens(m)) for m in marks), marks
    first = hits.first.locator("h3")
    assert first.evaluate("e => getComputedStyle(e).direction") == "rtl"
    # right-to-left layout: the title hugs the right edge of its column
    box, col = first.bounding_box(), page.locator("section.results").bounding_box()
    title_text = first.locator("a").bounding_box()
    assert abs((box["x"] + box["width"]) - (col["x"] + col["width"])) < 2
    assert title_text["x"] + title_text["width"] > col["x"] + col["width"] - 5
    assert page.dialogs == [] and page.console_errors == []


def test_topic_query_shows_the_sentence_with_the_mention(site, page):
    """Issue #10: for `topic:` queries the snippet used to be the article's opening."""
    page.goto(f"{site.url}/search?q=topic:kursk")
    hits = page.locator("article.hit").all()
    assert len(hits) >= 3
    for hit in hits:
        title, snippet = hit.locator("h3").inner_text(), hit.locator(".snippet").inner_text()
        if "كورسك" not in title:  # the mention is in the body: the snippet is its sentence
            assert "كورسك" in snippet, snippet[:120]
        tagged = hit.locator("mark.topic[title=kursk]").all_inner_texts()  # and it is marked
        assert tagged and all("كورسك" in t for t in tagged), (title, tagged)


def test_article_view_marks_spans_per_topic(site, page):
    a = site.call(site.ctx.index.search("topic:kursk topic:nato -source:hostile", limit=1)).hits[0].article
    page.goto(f"{site.url}/articles/{a.id}")
    assert page.locator("h1").inner_text().strip() == a.title.strip()
    marks = page.locator(".article mark.topic")
    shown = {(m.get_attribute("title"), m.inner_text()) for m in marks.all()}
    expected = {(m.topic, m.text) for m in a.matches}
    assert shown and shown <= expected  # every mark is one of the tagger's spans, text and topic
    assert {t for t, _ in shown} >= {"kursk", "nato"}
    assert len({m.get_attribute("class") for m in marks.all()}) >= 2  # one colour per topic


def test_language_switch_to_english_and_back(site, page):
    page.goto(f"{site.url}/search")
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.get_by_role("button", name="Search").count() == 1
    page.get_by_role("button", name="العربية").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("dir") == "rtl"


def test_facets_refine_the_query(site, page):
    page.goto(f"{site.url}/search?q=الناتو")
    source = page.locator("section.facets ul").nth(1).locator("li").first  # topic, then source
    name, count = source.locator("bdi").inner_text(), int(source.locator(".count").inner_text())
    source.locator("a").click()
    page.wait_for_load_state()
    assert page.locator("input[name=q]").input_value() == f"الناتو source:{name}"
    assert page.locator("p.total").inner_text().startswith(str(count))


def test_usable_without_javascript(site, browser):
    ctx = browser.new_context(java_script_enabled=False, locale="en", extra_http_headers={"Accept-Language": "en"})
    pg = ctx.new_page()
    try:
        pg.goto(f"{site.url}/search")
        assert pg.locator("html").get_attribute("dir") == "ltr"  # English UI from Accept-Language
        pg.fill("input[name=q]", "كورسك")
        pg.get_by_role("button", name="Search").click()
        pg.wait_for_load_state()
        assert pg.locator("article.hit").count() > 0
        pg.goto(f"{site.url}/subscriptions")
        pg.fill("input[name=query]", "topic:kursk")
        pg.get_by_role("button", name="Preview").click()  # a plain form post does the preview
        pg.wait_for_load_state()
        assert pg.locator("#preview .would").inner_text().startswith("Would have matched ")
        assert pg.locator("input[name=query]").input_value() == "topic:kursk"
    finally:
        ctx.close()


def test_failing_feed_shows_its_error_on_the_feeds_page(site, page):
    page.goto(f"{site.url}/feeds")
    row = page.locator("tr#feed-broken")
    assert "500" in row.locator("td.error").inner_text()
    assert row.locator("td.http").inner_text() == "500"
    assert page.locator("tr#feed-news td.http").inner_text() == "200"
    assert row.get_attribute("class") == "failing"
    assert page.locator("tr#feed-news td.error").inner_text().strip() == ""


def test_hostile_content_never_executes_nor_breaks_the_layout(site, page):
    no_overflow = "() => document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"
    page.goto(f"{site.url}/search?q=source:hostile")
    assert page.locator("article.hit").count() == 1
    title = page.locator("article.hit h3").inner_text()
    assert "<script>" in title and "onerror" in title  # shown as text
    assert "\u202e" not in page.content()
    assert page.evaluate(no_overflow)
    hit, column = page.locator("article.hit").bounding_box(), page.locator("section.results").bounding_box()
    assert column["x"] - 1 <= hit["x"] and hit["x"] + hit["width"] <= column["x"] + column["width"] + 1
    page.locator("article.hit h3 a").click()
    page.wait_for_load_state()
    assert "/articles/" in page.url
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.locator("script").count() == 1  # only our own, from /static
    assert page.locator("img, iframe, svg").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate(no_overflow)
    # the page's own chrome still reads in order around the hostile title
    meta = page.locator(".article .meta").inner_text()
    assert meta.index("hostile") < meta.index("2024-12-03")
    page.hover(".article h1")
    assert page.dialogs == [] and page.console_errors == []


def test_subscription_editor_previews_then_alerts_once(site, page):
    page.goto(f"{site.url}/subscriptions")
    page.fill("input[name=id]", "nato-desk")
    page.fill("input[name=query]", "الناتو")
    page.get_by_role("button", name="معاينة").click()
    page.wait_for_load_state()
    would = page.locator("#preview .would").inner_text()
    n = int(re.search(r"\d+", would).group())
    expected = site.call(site.ctx.index.search("الناتو", limit=1)).total
    assert n == expected > 0
    assert page.locator("#preview .examples li").count() == min(5, n)
    # the live preview follows the query as it is typed (the page's own script)
    page.fill("input[name=query]", "topic:budapest_memorandum")
    memo = site.call(site.ctx.index.search("topic:budapest_memorandum", limit=1)).total
    page.wait_for_function("n => ((document.querySelector('#preview .would') || {}).textContent || '')"
                           ".startsWith(`كان سيطابق ${n} مقالة`)", arg=memo)
    page.fill("input[name=query]", "الناتو")
    page.get_by_role("button", name="احفظ").click()
    page.wait_for_load_state()
    assert page.locator("tr#sub-nato-desk").count() == 1
    assert "nato-desk" in page.locator("p.notice").inner_text()

    before = len(site.receiver.items())
    site.publish_live(NEW_TITLE, "live-1")
    site.call(site.run_once())
    site.call(site.run_once())  # a second poll finds nothing new and sends nothing again
    got = [i for i in site.receiver.items()[before:] if i["subscription_id"] == "nato-desk"]
    assert [i["title"] for i in got] == [NEW_TITLE]
    page.goto(f"{site.url}/alerts")
    row = page.locator("table.outbox tbody tr").first
    assert "nato-desk" in row.inner_text() and row.get_attribute("class") == "sent"
    page.goto(f"{site.url}/alerts?state=pending")
    assert page.locator("table.outbox tbody tr", has_text="nato-desk").count() == 0
    # paused, it alerts on nothing new; resumed, it does again
    page.goto(f"{site.url}/subscriptions")
    page.locator("tr#sub-nato-desk").get_by_role("button", name="أوقف مؤقتًا").click()
    page.wait_for_load_state()
    assert page.locator("tr#sub-nato-desk").get_attribute("class") == "paused"
    site.publish_live(NEW_TITLE + " (2)", "live-2")
    site.call(site.run_once())
    assert [i["title"] for i in site.receiver.items()[before:] if i["subscription_id"] == "nato-desk"] == [NEW_TITLE]
    page.locator("tr#sub-nato-desk").get_by_role("button", name="استأنف").click()
    page.wait_for_load_state()
    assert page.locator("tr#sub-nato-desk").get_attribute("class") == "active"
    # the alert log filtered to this subscription, from its row
    page.locator("tr#sub-nato-desk").get_by_role("link", name="سجل التنبيهات").click()
    page.wait_for_load_state()
    rows = page.locator("table.outbox tbody tr")
    assert rows.count() >= 1 and all("nato-desk" in rows.nth(i).inner_text() for i in range(rows.count()))
    page.goto(f"{site.url}/alerts?subscription=no-such-subscription")
    assert page.locator("table.outbox").count() == 0
    # edited in the editor: same id, new query, kept active, no duplicate row
    page.goto(f"{site.url}/subscriptions")
    page.locator("tr#sub-nato-desk").get_by_role("link", name="عدّل").click()
    page.wait_for_load_state()
    assert page.locator("#editor input[name=query]").input_value() == "الناتو"
    assert page.locator("#editor input[name=id]").count() == 1  # hidden: the id is not editable
    page.fill("#editor input[name=query]", "الناتو OR كورسك")
    page.get_by_role("button", name="احفظ").click()
    page.wait_for_load_state()
    assert page.locator("tr#sub-nato-desk").count() == 1
    assert "الناتو OR كورسك" in page.locator("tr#sub-nato-desk").inner_text()
    assert page.locator("tr#sub-nato-desk").get_attribute("class") == "active"


def test_pages_are_small_and_send_a_strict_csp(site):
    longest = " OR ".join(["الناتو"] + [f"كلمة{'ب' * 18}{'ت' * (i % 7)}" for i in range(120)])  # ~3,600 chars
    for path in ("/search?q=الناتو", "/search?q=topic:kursk", "/topics/kursk", "/feeds", "/subscriptions",
                 "/alerts", "/login", f"/search?q={longest}"):
        r = _get(site, path)
        assert r.status_code == 200, path
        assert len(r.content) < 200_000, (path, len(r.content))
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert not re.search(r"<script>|<script [^>]*>[^<]", r.text), path  # no inline script
        assert not re.search(r"\sstyle=", r.text), path  # no inline style (the CSP would drop it)
        assert not re.search(r"(src|href)=\"(https?:)?//", r.text.replace(site.url, "")), path


def test_assets_are_served_here(site):
    css, js = _get(site, "/static/raqib.css"), _get(site, "/static/raqib.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "http" not in css.text and "http" not in js.text  # nothing fetched from elsewhere
    assert _get(site, "/static/..%2Fpages.py").status_code == 404


def test_session_cookie_and_csrf(site):
    r = _get(site, "/subscriptions")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    sid = r.cookies["raqib_session"]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
    form = {"id": "x-csrf", "query": "الناتو", "channels": "hook", "action": "save"}
    # no token, a wrong token, or the right token without its cookie: refused, nothing saved
    for data, cookies in ((form, {"raqib_session": sid}), (form | {"csrf": "0" * 64}, {"raqib_session": sid}),
                          (form | {"csrf": csrf}, {})):
        r2 = httpx.post(site.url + "/subscriptions", data=data, cookies=cookies, timeout=30)
        assert r2.status_code == 403
    assert "x-csrf" not in _get(site, "/subscriptions").text
    r3 = httpx.post(site.url + "/subscriptions", data=form | {"csrf": csrf}, cookies={"raqib_session": sid},
                    timeout=30)
    assert r3.status_code == 200 and 'id="sub-x-csrf"' in r3.text
    httpx.post(site.url + "/subscriptions/x-csrf/remove", data={"csrf": csrf}, cookies={"raqib_session": sid},
               timeout=30)
    assert 'id="sub-x-csrf"' not in _get(site, "/subscriptions").text


def test_login_refuses_an_unknown_token(site):
    r = _get(site, "/login")
    sid = r.cookies["raqib_session"]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
    bad = httpx.post(site.url + "/login", data={"csrf": csrf, "token": "not-a-token", "next": "//evil.example/"},
                     cookies={"raqib_session": sid}, timeout=30)
    assert bad.status_code == 401 and "raqib_session=" not in bad.headers.get("set-cookie", "")
    assert 'value="/search"' in bad.text  # an off-site next is never kept


def test_bad_query_is_one_line_not_a_traceback(site):
    r = _get(site, "/search?q=foo:bar")
    assert r.status_code == 400
    assert "foo" in r.text and "Traceback" not in r.text
    r = _get(site, "/alerts?state=bogus")
    assert r.status_code == 400 and "bogus" in r.text and "Traceback" not in r.text


def _login(page, url: str, token: str) -> None:
    page.fill("input[name=token]", token)
    page.get_by_role("button", name="ادخل").click()
    page.wait_for_load_state()


def test_login_with_an_api_token_on_a_server_that_requires_one(site, page):
    token_id, read_token = site.call(site.ctx.db(api_tokens.create, site.ctx.store, "read", "pages-test"))
    locked = site.call(site.serve(require_tokens=True))
    try:
        page.goto(f"{locked.url}/search?q=الناتو")
        assert urlsplit(page.url).path == "/login"
        _login(page, locked.url, "raqib_not-a-real-token")
        assert page.locator(".notice.error").inner_text() == "رمز غير معروف أو ملغى."
        _login(page, locked.url, read_token)
        assert urlsplit(page.url).path == "/search" and page.locator("article.hit").count() > 0  # back where it was
        cookie = next(c for c in page.context.cookies() if c["name"] == "raqib_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # a read token reads, but may not change anything
        page.goto(f"{locked.url}/subscriptions")
        page.fill("input[name=id]", "read-only-try")
        page.fill("input[name=query]", "الناتو")
        page.get_by_role("button", name="احفظ").click()
        page.wait_for_load_state()
        assert "admin" in page.locator(".notice.error").inner_text()
        assert not any(s.id == "read-only-try" for s in site.call(site.ctx.db(subs.load_all, site.ctx.store)))
        # logging out ends the session
        page.get_by_role("button", name="خروج").click()
        page.wait_for_load_state()
        page.goto(f"{locked.url}/feeds")
        assert urlsplit(page.url).path == "/login"
        # so does revoking the token
        _login(page, locked.url, read_token)
        assert urlsplit(page.url).path == "/feeds"
        site.call(site.ctx.db(api_tokens.revoke, site.ctx.store, token_id))
        page.goto(f"{locked.url}/feeds")
        assert urlsplit(page.url).path == "/login"
        # the API behind the login is not open either
        assert httpx.get(f"{locked.url}/api/v1/search?q=x", timeout=30).status_code == 401
    finally:
        site.call(locked.stop())


def test_feeds_add_poll_remove_and_opml(site, page, tmp_path):
    """Poll now needs the poller: this server runs with a pipeline, as under `raqib run`."""
    from raqib.pipeline import Pipeline

    async def start():
        pipeline = Pipeline(site.config)
        await pipeline.__aenter__()
        return pipeline, await site.serve(pipeline)

    pipeline, live = site.call(start())
    try:
        site.feeds.set_feed("/extra.xml", rss([rss_item("كورسك: معارك جديدة", "https://example.org/x1",
                                                        "تقدم في منطقة كورسك", format_datetime(datetime.now(UTC)),
                                                        guid="x1")]))
        page.goto(f"{live.url}/feeds")
        page.fill("form.editor input[name=id]", "extra")
        page.fill("form.editor input[name=url]", site.feeds.url("/extra.xml"))
        page.get_by_role("button", name="أضف مصدرًا").click()
        page.wait_for_load_state()
        assert page.locator("tr#feed-extra").count() == 1
        page.locator("tr#feed-extra").get_by_role("button", name="اجلب الآن").click()
        page.wait_for_load_state()
        assert "extra" in page.locator("p.notice").inner_text()
        assert page.locator("tr#feed-extra td.num").first.inner_text() == "1"  # one article stored
        assert site.call(site.ctx.index.search("source:extra", limit=1)).total == 1
        # a feeds.yaml feed cannot be removed here; this one can
        assert page.locator("tr#feed-news").get_by_role("button", name="احذف").count() == 0
        with page.expect_download() as dl:
            page.get_by_role("link", name="صدّر القائمة (OPML)").click()
        opml = Path(dl.value.path()).read_text(encoding="utf-8")
        assert site.feeds.url("/extra.xml") in opml
        page.locator("tr#feed-extra").get_by_role("button", name="احذف").click()
        page.wait_for_load_state()
        assert page.locator("tr#feed-extra").count() == 0
        # and back through an OPML import
        (tmp_path / "feeds.opml").write_text(opml, encoding="utf-8")
        page.set_input_files("input[name=opml]", str(tmp_path / "feeds.opml"))
        page.get_by_role("button", name="استورد OPML").click()
        page.wait_for_load_state()
        assert page.locator("tr#feed-extra").count() == 1
        assert page.dialogs == [] and page.console_errors == []
    finally:
        async def stop():
            await live.stop()
            await pipeline.__aexit__(None, None, None)
        site.call(stop())


def test_screenshots(browser, tmp_path_factory):
    """The README's pictures (RAQIB_SCREENSHOTS=1 writes them into docs/), over a showcase
    data dir; each page is also checked to render and to stay under 200 KB."""
    out = DOCS if os.environ.get("RAQIB_SCREENSHOTS") else tmp_path_factory.mktemp("shots")
    out.mkdir(exist_ok=True)
    site = Site(tmp_path_factory.mktemp("showcase"), showcase=True)
    try:
        site.call(site.start())
        ctx = browser.new_context(locale="ar", extra_http_headers={"Accept-Language": "ar"},
                                  viewport={"width": 1280, "height": 860})
        pg = ctx.new_page()
        a = site.call(site.ctx.index.search("topic:kursk topic:nato", limit=1)).hits[0].article
        for name, path in (("search", "/search?q=الناتو"), ("article", f"/articles/{a.id}"),
                           ("topic", "/topics/nato"), ("feeds", "/feeds"),
                           ("subscriptions", "/subscriptions?q=" + "كورسك")):
            r = pg.goto(site.url + path)
            assert r.status == 200 and len(r.body()) < 200_000, path
            pg.screenshot(path=str(out / f"web-{name}.png"))
            assert (out / f"web-{name}.png").stat().st_size > 10_000
        ctx.close()
    finally:
        if hasattr(site, "web"):
            site.call(site.stop())
        site.loop.call_soon_threadsafe(site.loop.stop)
        site.thread.join(10)


# ------------------------------------------------------------------ pieces, without a browser

def test_language_from_cookie_then_accept_language():
    from raqib.web.i18n import pick

    assert pick("en", "ar") == "en"
    assert pick(None, "fr-FR,en;q=0.8,ar;q=0.9") == "ar"
    assert pick(None, "en-GB, ar;q=0.1") == "en"
    assert pick("xx", "de, fr;q=bad") == "ar"  # nothing we have: Arabic


def test_redirect_targets_stay_on_this_server():
    from raqib.web.pages import _local

    assert _local("/search?q=%D8%A7") == "/search?q=%D8%A7"
    for bad in ("//evil.example/", "/\\evil.example", "/\t/evil.example", "https://evil.example/", "search", ""):
        assert _local(bad) == "/search", bad


def test_marks_are_escaped_and_placed_by_offsets():
    from raqib.web.pages import spans_html

    text = "<b>الناتو</b> «كورسك» \u202eX"
    marks = [{"start": 3, "end": 9, "topic": None}, {"start": 15, "end": 20, "topic": "kursk"},
             {"start": 4, "end": 6, "topic": None}]  # overlapping: dropped
    html = str(spans_html(text, marks, 0, {"kursk": 1}))
    assert html == ('&lt;b&gt;<mark>الناتو</mark>&lt;/b&gt; «<mark class="topic t1" title="kursk">كورسك</mark>» X')
