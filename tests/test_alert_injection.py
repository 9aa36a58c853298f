"""Hostile articles through every channel format (issue 7, item 6), and what arrived parsed.

Email (html, markdown — Apprise's Markdown→HTML path — and text) goes to a real aiosmtpd server;
the signed webhook and Apprise json:// to an aiohttp receiver. Slack, Discord and Telegram live on
fixed public hosts, so the one HTTP transport Apprise uses (requests' HTTPAdapter.send) is pointed
at a loopback receiver for those tests: the request Apprise built is sent for real, to 127.0.0.1,
and parsed there. Nothing leaves loopback (the adapter refuses to forward anywhere else)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

import lxml.html
import pytest
import pytest_asyncio
import requests.adapters
from aiohttp import web
from aiosmtpd.controller import Controller

from alerts.channels import build_channel
from alerts.message import AlertItem, render_markdown, render_text, safe_link
from tests.receivers import free_port

OURS = "example.org"  # the only host a link may point at
LINK = "https://example.org/ar/nato?id=42"
BIDI = re.compile("[\u202a-\u202e\u061c\u200b-\u200d\u2060\ufeff]")
MENTIONS = ("@everyone", "@here", "<!channel>", "<!here>", "<!everyone>", "<@123456>", "<@&987>")


def item(n: int, **kw) -> AlertItem:
    base = AlertItem(
        delivery_id=f"dlv-{n}", subscription_id="s", subscription_name="الناتو", query="الناتو",
        article_id=f"a{n}", title="الناتو يعزز دفاعاته", source="الجزيرة", link=LINK,
        topics=("nato",), snippet="قمة «الناتو» في بروكسل",
        published=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), language="ar")
    return replace(base, **kw)


HOSTILE = [
    item(1, link="https://example.org/a\n[click here](https://evil.example/login)"),
    item(2, link="javascript:alert(document.cookie)", title="javascript link"),
    item(3, title="[Login here](https://evil.example/login) ![x](https://evil.example/p.png)",
         language="en"),
    item(4, title='<img src=x onerror=alert(1)> <a href="https://evil.example/login">click</a>',
         snippet="<script>alert(1)</script> «الناتو» <iframe src=https://evil.example/>"),
    item(5, title="\u202eexe.الناتو", source="\u202eالجزيرة", link="https://example.org/\u202egnp.exe"),
    item(6, title="@everyone @here <!channel> <!here> <!everyone> <@123456> <@&987> الناتو",
         source="@everyone", language="en"),
    item(7, title="Line one\nTo: victim@example.org\r\nBcc: all@example.org",
         source="Al Jazeera\n\n# Injected heading", snippet="ok\n- injected item\n1. also\n===",
         language="en"),
    item(8, title="&lt;img src=x onerror=alert(1)&gt; &#60;script&#62;x&#60;/script&#62;",
         link="https://example.org/a) [evil](https://evil.example/"),
    item(9, title="`code` **bold** | table | ~~~ <https://evil.example/auto>", language="en",
         link="https://user:pw@example.org/"),
]


# --------------------------------------------------------------------------- what "safe" means

def assert_safe_html(doc: str) -> None:
    tree = lxml.html.document_fromstring(doc)
    assert not tree.xpath("//img|//script|//iframe|//object|//embed|//svg|//form"), doc
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        for name in el.attrib:
            assert not name.lower().startswith("on"), (el.tag, name)
    for a in tree.xpath("//a"):
        href = a.get("href") or ""
        assert urlsplit(href).scheme == "https" and urlsplit(href).hostname == OURS, href
    text = tree.text_content()
    assert not BIDI.search(text)
    for m in MENTIONS:
        assert m not in text


def assert_safe_text(text: str) -> None:
    assert not BIDI.search(text)
    for m in MENTIONS:
        assert m not in text
    for line in text.splitlines():
        assert not line.lstrip("\u200e\u200f").startswith(("To:", "Bcc:", "# Injected", "- injected", "1. also")), line
        bare = line.strip().lstrip("\u200e\u200f")
        if re.fullmatch(r"[a-z]+:\S*", bare):  # a link line: only ours, only http(s)
            assert urlsplit(bare).scheme == "https" and urlsplit(bare).hostname == OURS, bare
    assert "javascript:alert" not in text


def assert_safe_markdown(md: str) -> None:
    """No Markdown link, image or autolink points anywhere but example.org."""
    assert not BIDI.search(md)
    for m in MENTIONS:
        assert m not in md
    for target in re.findall(r"(?<!\\)\]\(([^)]*)\)", md):
        assert urlsplit(target).hostname == OURS, target
    assert not re.search(r"(?<!\\)<https?:", md)
    assert "\n# " not in md and "\n- " not in md


def test_render_functions_drop_unsafe_links():
    assert safe_link(HOSTILE[0].link) is None and safe_link(HOSTILE[1].link) is None
    assert safe_link(HOSTILE[4].link) == "https://example.org/gnp.exe"
    assert safe_link(HOSTILE[7].link) is None and safe_link(HOSTILE[8].link) is None
    assert safe_link("https://example.org/مقال(1)") == "https://example.org/%D9%85%D9%82%D8%A7%D9%84%281%29"
    assert safe_link("https://example.org/مقال (1)") is None
    subject, body = render_text(HOSTILE)
    assert "\n" not in subject and "\r" not in subject
    assert_safe_text(body)
    assert_safe_markdown(render_markdown(HOSTILE))
    for it in HOSTILE:
        assert_safe_markdown(render_markdown([it]))
        assert_safe_text(render_text([it])[1])


# --------------------------------------------------------------------------- email

class Sink:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self) -> email.message.EmailMessage:
        e = self.envelopes[-1]
        return email.message_from_bytes(e.original_content or e.content, policy=email.policy.default)


@pytest.fixture(scope="module")
def smtp():
    sink = Sink()
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctl = Controller(sink, hostname="127.0.0.1", port=port)
        ctl.start()
    sink.port = port
    yield sink
    ctl.stop()


def mail(port: int, fmt: str):
    return build_channel("mail", {"type": "apprise", "format": fmt,
                                  "url": f"mailto://127.0.0.1:{port}?from=alerts@example.org"
                                         "&to=desk@example.org"}, env={})


@pytest.mark.parametrize("fmt", ["html", "markdown", "text"])
@pytest.mark.parametrize("batch", ["digest", "each"])
async def test_email_receives_no_injected_markup(smtp, fmt, batch):
    groups = [HOSTILE] if batch == "digest" else [[it] for it in HOSTILE]
    for items in groups:
        n = len(smtp.envelopes)
        await mail(smtp.port, fmt).send(items)  # a fresh channel: Apprise spaces sends of one
        assert len(smtp.envelopes) == n + 1
        msg = smtp.message()
        subject = str(msg["subject"])
        assert "\n" not in subject and not BIDI.search(subject)
        assert msg["bcc"] is None and msg["to"] == "desk@example.org"
        html_part = msg.get_body(("html",))
        if fmt in ("html", "markdown"):
            assert html_part is not None
            assert_safe_html(html_part.get_content())
        plain = msg.get_body(("plain",))
        if plain is not None:
            assert_safe_text(plain.get_content())


async def test_markdown_email_keeps_the_real_link_and_shows_hostile_text(smtp):
    await mail(smtp.port, "markdown").send([HOSTILE[2], HOSTILE[3], item(0)])
    tree = lxml.html.document_fromstring(smtp.message().get_body(("html",)).get_content())
    hrefs = [a.get("href") for a in tree.xpath("//a")]
    assert LINK in hrefs  # the genuine link survives
    text = tree.text_content()
    assert "[Login here](https://evil.example/login)" in text  # shown as text, not a link
    assert "<img src=x onerror=alert(1)>" in text


# --------------------------------------------------------------------------- webhook and json://

@pytest_asyncio.fixture
async def receiver():
    got: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        got.append({"host": request.headers.get("X-Original-Host", ""), "path": request.path,
                    "body": await request.read()})
        if "telegram" in got[-1]["host"]:
            return web.json_response({"ok": True, "result": {"message_id": 1}})
        if "slack" in got[-1]["host"]:
            return web.Response(text="ok")
        return web.Response(status=204 if "discord" in got[-1]["host"] else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    got_port = type("R", (), {"port": port, "got": got})
    yield got_port
    await runner.cleanup()


def check_json_fields(data) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            if k == "link":
                assert v == "" or (urlsplit(v).hostname == OURS and not re.search(r"\s", v)), v
            check_json_fields(v)
    elif isinstance(data, list):
        for v in data:
            check_json_fields(v)
    elif isinstance(data, str):
        assert not BIDI.search(data) and "\n" not in data, data
        for m in MENTIONS:
            assert m not in data


async def test_signed_webhook_json_is_clean(receiver):
    url = f"http://127.0.0.1:{receiver.port}/hook"
    ch = build_channel("hook", {"type": "webhook", "url": url, "secret_env": "RAQIB_T_SECRET"},
                       env={"RAQIB_T_SECRET": "s3cret-value"})
    await ch.send(HOSTILE)
    payload = json.loads(receiver.got[-1]["body"])
    assert payload["count"] == len(HOSTILE)
    check_json_fields(payload)
    links = {it["article_id"]: it["link"] for it in payload["items"]}
    assert links["a1"] == links["a2"] == links["a8"] == links["a9"] == ""
    assert links["a5"] == "https://example.org/gnp.exe"


async def test_apprise_json_text_is_clean(receiver):
    ch = build_channel("j", {"type": "json", "url": f"http://127.0.0.1:{receiver.port}/j"}, env={})
    await ch.send(HOSTILE)
    got = json.loads(receiver.got[-1]["body"])
    assert "\n" not in got["title"]
    assert_safe_text(got["message"])


# --------------------------------------------------------------------------- Slack, Discord, Telegram

@pytest.fixture
def loopback_transport(monkeypatch, receiver):
    """requests' adapter sends every request to the loopback receiver instead of its public host
    (the original host goes in X-Original-Host). It can reach nothing else."""
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        request.headers["X-Original-Host"] = parts.hostname or ""
        request.url = f"http://127.0.0.1:{receiver.port}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        assert urlsplit(request.url).hostname == "127.0.0.1"
        kwargs["verify"] = False
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return receiver


ENV = {"RAQIB_T_SLACK": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
       "RAQIB_T_DISCORD": "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
       "RAQIB_T_TG": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}


def slack_links(text: str) -> list[str]:
    return re.findall(r"<((?:https?|mailto):[^|>]*)", text)


async def received(receiver, name: str, spec: dict, host: str):
    """Send the digest and then each hostile item alone (a fresh channel each time: Apprise spaces
    sends of one channel by seconds); yield each request body's JSON."""
    for items in [HOSTILE, *([it] for it in HOSTILE)]:
        await build_channel(name, spec, env=ENV).send(items)
        req = receiver.got[-1]
        assert req["host"] == host
        yield req, json.loads(req["body"])


async def test_slack_receives_no_mentions_or_foreign_links(loopback_transport):
    seen = []
    async for _, payload in received(loopback_transport, "slack", {"type": "slack", "url": "${RAQIB_T_SLACK}"},
                                     "hooks.slack.com"):
        blob = json.dumps(payload, ensure_ascii=False)
        for m in ("<!channel", "<!here", "<!everyone", "<@"):
            assert m not in blob, m
        assert not BIDI.search(blob)
        for link in slack_links(blob):
            assert urlsplit(link).hostname == OURS, link
            seen.append(link)
        assert "Login here" in blob or "javascript link" in blob or "الناتو" in blob
    assert LINK in seen  # the genuine link arrives as a Slack link


async def test_discord_receives_no_mentions_or_foreign_links(loopback_transport):
    seen = []
    async for _, payload in received(loopback_transport, "discord",
                                     {"type": "discord", "url": "${RAQIB_T_DISCORD}"}, "discord.com"):
        assert not (payload.get("allow_mentions") or {}).get("parse"), payload
        assert not payload.get("allowed_mentions")
        text = "\n".join(filter(None, [payload.get("content", "")] + [
            json.dumps(e, ensure_ascii=False) for e in payload.get("embeds", [])]))
        for m in MENTIONS:
            assert m not in text
        assert not re.search(r"@[a-z0-9]", text, re.I)  # what Apprise and Discord ping
        assert not BIDI.search(text)
        for target in re.findall(r"(?<!\\)\]\(([^)]*)\)", text):
            assert urlsplit(target).hostname == OURS, (target, text)
            seen.append(target)
    assert LINK in seen


async def test_telegram_html_has_no_foreign_links_or_tags(loopback_transport):
    spec = {"type": "telegram", "token": "${RAQIB_T_TG}", "chat_id": "-100123"}
    async for req, payload in received(loopback_transport, "tg", spec, "api.telegram.org"):
        assert req["path"].endswith("/sendMessage")
        assert payload.get("parse_mode", "").upper() == "HTML"
        assert_safe_html(f"<html><body>{payload['text']}</body></html>")
