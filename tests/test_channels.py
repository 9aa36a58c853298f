"""Alert channels against real servers on loopback: an aiosmtpd SMTP server (with AUTH) for
Apprise's mailto://, an aiohttp receiver for the signed webhook and Apprise's json://.
No mocks."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socket
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerts.channels import (
    AppriseChannel,
    SignedWebhookChannel,
    build_channel,
    expand_env,
    verify_signature,
)
from alerts.message import (
    LRM,
    PDI,
    RLI,
    RLM,
    AlertItem,
    message_id,
    render_html,
    render_markdown,
    render_text,
    to_json,
)
from monitor.errors import ChannelError

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SMTP_USER = "raqib"
SMTP_PASSWORD = "s3cr@t/p:ss%w0rd"      # URL-special characters on purpose
HOOK_SECRET = "whsec-7f3a9c1d2e4b"
TITLE = "روته: الناتو يعزز دفاعاته الشرقية بعد قمة بروكسل"
LINK = "https://example.org/ar/nato-rutte?utm_source=rss&id=42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked(text: str) -> dict:
    """snippet and snippet_marks from a test's «…» shorthand (items carry offsets, not marks)."""
    plain, marks = "", []
    for i, part in enumerate(text.replace("»", "«").split("«")):
        if i % 2:
            marks.append((len(plain), len(plain) + len(part), None))
        plain += part
    return {"snippet": plain, "snippet_marks": tuple(marks)}


def item(n: int = 0, **kw) -> AlertItem:
    if "snippet" in kw:
        kw.update(marked(kw["snippet"]))
    base = AlertItem(
        delivery_id=f"dlv-{n:04d}", subscription_id="nato-watch", subscription_name="الناتو",
        query="الناتو", article_id=f"art-{n}", title=TITLE if n == 0 else f"{TITLE} ({n})",
        source="الجزيرة", link=LINK if n == 0 else f"https://example.org/ar/{n}",
        topics=("nato", "kursk"),
        **marked("... أكد الأمين العام أن «الناتو» سيعزز وجوده قرب «كورسك» خلال ..."),
        published=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), language="ar")
    return replace(base, **kw)


# --------------------------------------------------------------------------- SMTP server

class SmtpSink:
    def __init__(self) -> None:
        self.envelopes: list = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        if ok:
            self.logins.append(auth_data.login)
        return AuthResult(success=ok, handled=False)

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.original_content or e.content, policy=email.policy.default)
                for e in self.envelopes]


@pytest.fixture(scope="module")
def smtp_server():
    sink = SmtpSink()
    port = free_port()
    with warnings.catch_warnings():  # plain-text AUTH is fine on loopback
        warnings.simplefilter("ignore")
        ctl = Controller(sink, hostname="127.0.0.1", port=port, authenticator=sink.authenticate,
                         auth_required=True, auth_require_tls=False)
        ctl.start()
    sink.port = port
    yield sink
    ctl.stop()


@pytest.fixture
def smtp(smtp_server):
    smtp_server.envelopes.clear()
    smtp_server.logins.clear()
    return smtp_server


def mail_channel(port: int, password_var: str = "RAQIB_TEST_SMTP_PASSWORD", fmt: str = "html",
                 env: dict | None = None):
    env = {password_var: SMTP_PASSWORD} if env is None else env
    spec = {"type": "apprise", "format": fmt,
            "url": f"mailto://{SMTP_USER}:${{{password_var}}}@127.0.0.1:{port}"
                   "?from=alerts@example.org&to=desk@example.org"}
    return build_channel("desk-mail", spec, env=env)


# --------------------------------------------------------------------------- webhook receiver

class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 204
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"headers": {k.lower(): v for k, v in request.headers.items()},
                              "body": body})
        if self.status >= 400:
            return web.Response(status=self.status, text="receiver is broken")
        return web.Response(status=self.status)


@pytest_asyncio.fixture
async def hook():
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


# --------------------------------------------------------------------------- email

async def test_email_single_item_arrives_with_arabic_intact(smtp):
    ch = mail_channel(smtp.port)
    await ch.send([item()])

    assert len(smtp.envelopes) == 1 and smtp.logins == [SMTP_USER.encode()]
    assert smtp.envelopes[0].rcpt_tos == ["desk@example.org"]
    msg = smtp.messages()[0]
    subject, _ = render_text([item()])
    assert msg["subject"] == subject
    assert TITLE in msg["subject"] and msg["subject"].startswith("[Raqib] ")
    html_part = msg.get_body(("html",)).get_content()
    assert TITLE in html_part
    assert 'dir="rtl" lang="ar"' in html_part and "<mark>الناتو</mark>" in html_part
    assert LINK.replace("&", "&amp;") in html_part
    text_part = msg.get_body(("plain",)).get_content()  # Apprise's conversion of our HTML
    assert f"{RLM}{TITLE}" in text_part and LINK in text_part
    assert SMTP_PASSWORD not in repr(ch) and SMTP_PASSWORD not in str(ch)


async def test_email_text_format_body_keeps_isolates(smtp):
    ch = mail_channel(smtp.port, fmt="text")
    await ch.send([item()])
    msg = smtp.messages()[0]
    text_part = msg.get_body(("plain",)).get_content()
    assert f"{RLM}{RLI}{TITLE}{PDI}" in text_part
    assert LINK in text_part


async def test_email_digest_of_three_is_one_message(smtp):
    items = [item(i) for i in range(3)]
    await mail_channel(smtp.port).send(items)

    assert len(smtp.envelopes) == 1
    msg = smtp.messages()[0]
    assert msg["subject"].startswith("[Raqib] 3 new matches for ")
    assert "الناتو" in msg["subject"]
    html_part = msg.get_body(("html",)).get_content()
    for it in items:
        assert it.title in html_part
    assert html_part.count('class="raqib-item"') == 3


async def test_email_wrong_password_raises_with_reason_and_no_secret(smtp):
    wrong = "not-the-password-9876"
    ch = mail_channel(smtp.port, env={"RAQIB_TEST_SMTP_PASSWORD": wrong})
    lg = logging.getLogger("apprise")
    before = (lg.level, lg.propagate)
    with pytest.raises(ChannelError) as e:
        await ch.send([item()])
    text = str(e.value)
    assert "desk-mail" in text and "535" in text  # aiosmtpd: 535 authentication failed
    assert wrong not in text and SMTP_PASSWORD not in text
    assert not smtp.envelopes
    assert (lg.level, lg.propagate) == before  # the apprise logger is left as we found it


async def test_email_unreachable_server_raises():
    ch = mail_channel(free_port())
    t0 = time.monotonic()
    with pytest.raises(ChannelError) as e:
        await ch.send([item()])
    assert time.monotonic() - t0 < 5
    assert "desk-mail" in str(e.value) and "refused" in str(e.value).lower()
    assert SMTP_PASSWORD not in str(e.value)


# --------------------------------------------------------------------------- signed webhook

def webhook(url: str, secret: str = HOOK_SECRET, **kw) -> SignedWebhookChannel:
    return build_channel("desk-hook", {"type": "webhook", "url": url,
                                       "secret_env": "RAQIB_TEST_HOOK_SECRET", **kw},
                         env={"RAQIB_TEST_HOOK_SECRET": secret})


async def test_signed_webhook_delivers_verifiable_arabic_json(hook):
    ch = webhook(hook.url)
    assert isinstance(ch, SignedWebhookChannel)
    await ch.send([item()])

    assert len(hook.requests) == 1
    h, body = hook.requests[0]["headers"], hook.requests[0]["body"]
    assert h["content-type"].startswith("application/json")
    assert abs(int(h["x-raqib-timestamp"]) - time.time()) < 30
    assert h["x-raqib-delivery"] == "dlv-0000"
    assert h["x-raqib-signature"].startswith("sha256=")
    assert verify_signature(HOOK_SECRET, h["x-raqib-timestamp"], body, h["x-raqib-signature"])
    assert not verify_signature("wrong-secret", h["x-raqib-timestamp"], body, h["x-raqib-signature"])
    assert not verify_signature(HOOK_SECRET, h["x-raqib-timestamp"], body + b" ", h["x-raqib-signature"])
    assert not verify_signature(HOOK_SECRET, h["x-raqib-timestamp"], body, h["x-raqib-signature"],
                                now=time.time() + 3600)  # replayed an hour later
    payload = json.loads(body.decode("utf-8"))
    assert payload["type"] == "raqib.alert" and payload["count"] == 1
    assert payload["items"][0]["title"] == TITLE
    assert payload["items"][0]["published"] == "2024-05-01T12:30:00Z"
    assert TITLE.encode("utf-8") in body  # raw UTF-8, not \u escapes


async def test_signed_webhook_digest_has_one_digest_id(hook):
    items = [item(i) for i in range(3)]
    await webhook(hook.url).send(items)
    assert len(hook.requests) == 1
    h = hook.requests[0]["headers"]
    assert h["x-raqib-delivery"] == message_id(items) == message_id(items[::-1])
    assert h["x-raqib-delivery"].startswith("digest-")
    payload = json.loads(hook.requests[0]["body"])
    assert [i["delivery_id"] for i in payload["items"]] == ["dlv-0000", "dlv-0001", "dlv-0002"]


async def test_signed_webhook_500_raises(hook):
    hook.status = 500
    with pytest.raises(ChannelError) as e:
        await webhook(hook.url).send([item()])
    assert "500" in str(e.value) and "desk-hook" in str(e.value)
    assert HOOK_SECRET not in str(e.value)


async def test_signed_webhook_unreachable_raises_without_secret():
    ch = webhook(f"http://127.0.0.1:{free_port()}/hook", timeout=3)
    with pytest.raises(ChannelError) as e:
        await ch.send([item()])
    assert "desk-hook" in str(e.value)
    assert HOOK_SECRET not in str(e.value) and HOOK_SECRET not in repr(ch) and HOOK_SECRET not in str(ch)


# --------------------------------------------------------------------------- apprise json://

async def test_apprise_json_to_receiver(hook):
    ch = build_channel("generic-json", {"type": "json", "url": hook.url}, env={})
    assert isinstance(ch, AppriseChannel)
    await ch.send([item()])
    assert len(hook.requests) == 1
    got = json.loads(hook.requests[0]["body"].decode("utf-8"))
    assert TITLE in got["title"] and TITLE in got["message"]

    hook.status = 500
    with pytest.raises(ChannelError) as e:
        await ch.send([item()])
    assert "generic-json" in str(e.value) and "500" in str(e.value)


async def test_apprise_credentials_are_redacted_from_errors_and_logs(hook, caplog):
    pw = "json-pw-Qx7/k@9"
    ch = build_channel("auth-json", {"type": "apprise", "format": "text",
                                     "url": hook.url.replace("http://", "json://bot:${RAQIB_TEST_JSON_PW}@")},
                       env={"RAQIB_TEST_JSON_PW": pw})
    hook.status = 500
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ChannelError) as e:
        await ch.send([item()])
    assert hook.requests and hook.requests[0]["headers"]["authorization"].startswith("Basic ")
    assert "500" in str(e.value)
    assert pw not in str(e.value) and pw not in caplog.text and pw not in repr(ch)


# --------------------------------------------------------------------------- environment & secrets

def test_expand_env_replaces_and_names_missing_variable():
    env = {"RAQIB_SMTP_PASSWORD": "hunter2-xyz"}
    assert expand_env("a:${RAQIB_SMTP_PASSWORD}@b", env) == "a:hunter2-xyz@b"
    assert expand_env("no references", env) == "no references"
    with pytest.raises(ChannelError) as e:
        expand_env("mailtos://u:${RAQIB_MISSING_PW}@h", env)
    assert "RAQIB_MISSING_PW" in str(e.value)
    with pytest.raises(ChannelError) as e:
        expand_env("${HOME}", env)  # only RAQIB_ variables
    assert "RAQIB_" in str(e.value)


def test_build_channel_missing_secret_names_variable():
    with pytest.raises(ChannelError) as e:
        build_channel("h", {"type": "webhook", "url": "https://x.example/h",
                            "secret_env": "RAQIB_NOPE_SECRET"}, env={})
    assert "RAQIB_NOPE_SECRET" in str(e.value)
    with pytest.raises(ChannelError) as e:
        build_channel("m", {"type": "apprise", "url": "mailtos://u:${RAQIB_NOPE_PW}@smtp.example.org"},
                      env={})
    assert "RAQIB_NOPE_PW" in str(e.value) and "'m'" in str(e.value)
    with pytest.raises(ChannelError):
        build_channel("x", {"type": "carrier-pigeon"}, env={})
    with pytest.raises(ChannelError):
        build_channel("x", {"type": "apprise", "url": "nosuchservice://abc"}, env={})


def test_secrets_never_in_repr_or_str():
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    env = {"RAQIB_TG_TOKEN": token, "RAQIB_SMTP_PASSWORD": "pw-Zq8!x/y@z", "RAQIB_HOOK": HOOK_SECRET}
    chans = [
        build_channel("tg", {"type": "telegram", "token": "${RAQIB_TG_TOKEN}", "chat_id": "-100123"}, env=env),
        build_channel("tg2", {"type": "apprise", "url": "tgram://${RAQIB_TG_TOKEN}/-100123",
                              "format": "markdown"}, env=env),
        build_channel("mail", {"type": "email", "host": "smtp.example.org", "user": "alerts",
                               "password": "${RAQIB_SMTP_PASSWORD}", "to": ["a@example.org", "b@example.org"],
                               "from": "raqib@example.org"}, env=env),
        build_channel("hook", {"type": "webhook", "url": "https://hooks.example.org/r",
                               "secret": "${RAQIB_HOOK}"}, env=env),
    ]
    for ch in chans:
        for value in env.values():
            assert value not in repr(ch) and value not in str(ch)
    assert chans[0].fmt == "markdown" and chans[2].fmt == "html"


# --------------------------------------------------------------------------- rendering

def test_render_text_marks_rtl():
    subject, body = render_text([item()])
    assert subject.startswith("[Raqib] ") and f"{RLI}{TITLE}{PDI}" in subject
    assert f"{RLM}{RLI}{TITLE}{PDI}" in body
    assert "أن الناتو سيعزز" in body and "«" not in body and f"{LRM}{LINK}" in body  # no marks in text
    for line in body.splitlines():  # every isolate is closed on its own line
        assert line.count(PDI) == sum(line.count(c) for c in "\u2066\u2067\u2068")
    subject3, _ = render_text([item(i) for i in range(3)])
    assert subject3 == f"[Raqib] 3 new matches for {RLI}الناتو{PDI}"


def test_render_html_marks_escapes_and_directions():
    evil = item(title="<script>alert('x')</script> الناتو & co", link="javascript:alert(1)",
                language="ar")
    en = item(1, title="NATO summit opens", language="en", snippet="the «NATO» summit")
    page = render_html([item(), evil, en])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page
    assert 'dir="rtl" lang="ar"' in page and 'dir="ltr" lang="en"' in page
    assert "<mark>الناتو</mark>" in page and "<mark>كورسك</mark>" in page and "<mark>NATO</mark>" in page
    assert "«" not in page.split("<body", 1)[1]
    assert f'href="{LINK.replace("&", "&amp;")}"' in page
    assert '<body dir="auto"' in page


def test_render_markdown_and_json():
    md = render_markdown([item()])
    assert "**الناتو**" in md and "**كورسك**" in md and "«" not in md
    assert f"]({LINK})**" in md and md.startswith(f"**{RLM}[")
    data = to_json([item(), item(1)])
    assert data["type"] == "raqib.alert" and len(data["items"]) == 2
    assert data["items"][0]["published"] == "2024-05-01T12:30:00Z"
    assert data["items"][0]["topics"] == ["nato", "kursk"]
    snip = data["items"][0]["snippet"]  # offsets, the shape of a search hit's snippet
    assert [snip["text"][m["start"]:m["end"]] for m in snip["marks"]] == ["الناتو", "كورسك"]
    assert "«" not in snip["text"] and data["version"] == 2
    json.dumps(data)  # serialisable as is


def test_verify_signature_rejects_garbage():
    assert not verify_signature(HOOK_SECRET, "not-a-number", b"{}", "sha256=00")
    assert not verify_signature(HOOK_SECRET, str(int(time.time())), b"{}", "sha256=zz")
    assert not verify_signature("", str(int(time.time())), b"{}", "sha256=00")
