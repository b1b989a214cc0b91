"""Screenshots of the widget in every state, for docs/widget.md, from the real widget in
Debian's Chromium against the local emulator (a live call with the demo agent).

    .venv/bin/python scripts/screenshots.py            # writes docs/images/widget-*.png

States: idle, connecting, active (the agent speaking), muted, ended, error (rate limited,
counting down); on a light and a dark page (the dark one with the OS in dark mode); the
floating button at desktop size and the inline <oneinbox-call> at phone size (390x844).
"""

from __future__ import annotations

import html
import secrets
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oneinbox_asgi import CallRequest, OneInboxMiddleware  # noqa: E402
from oneinbox_asgi.widget import script_tag  # noqa: E402
from oneinbox_emulator.agent import AgentSettings  # noqa: E402
from oneinbox_emulator.app import Emulator  # noqa: E402
from oneinbox_emulator.serving import BackgroundServers, Served, bind  # noqa: E402
from tests.chromium import launched  # noqa: E402

OUT = ROOT / "docs" / "images"
AGENT = "agt_demo"

ARTICLE = (
    "<h1>Billing help</h1><p>Questions about an invoice, a refund or your plan? Our AI "
    "assistant answers at once, day and night.</p><p>It can look up your last invoices, "
    "explain a charge and change the plan you are on.</p>"
    "<p><a href='#faq'>Frequently asked questions</a> · <a href='#contact'>Contact us</a></p>"
)
BODY = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:2rem;"
LIGHT = BODY + "background:#f6f7f9;color:#1d2330}"
DARK = BODY + "background:#111;color:#e8e8ee}a{color:#9cf}"


def host_app(emulator: Emulator) -> Any:
    def authorize(request: CallRequest) -> str | None:
        user = request.session.get("user")
        return str(user) if user else None

    def variables(request: CallRequest) -> dict[str, Any]:
        return {"customer_name": str(request.session["user"])}

    async def login(request: Request) -> Response:
        request.session["user"] = request.query_params.get("name", "Ada")
        return PlainTextResponse("ok")

    async def page(request: Request) -> Response:
        nonce = secrets.token_urlsafe(12)
        dark = request.query_params.get("dark") == "1"
        inline = request.query_params.get("inline") == "1"
        widget = "<oneinbox-call></oneinbox-call>" if inline else ""
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>Billing help</title><style nonce='{nonce}'>{DARK if dark else LIGHT}</style>"
            f"<main>{ARTICLE}{widget}</main>{script_tag(nonce=nonce)}</html>"
        )
        csp = f"script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'"
        return HTMLResponse(body, headers={"content-security-policy": csp})

    site = Starlette(routes=[Route("/", page), Route("/login", login)])
    broker = OneInboxMiddleware(
        site,
        authorize=authorize,
        variables=variables,
        api_key=emulator.api_key,
        agent_id=AGENT,
        base_url=emulator.base_url,
        rate_limit=None,
        max_concurrent_calls=None,
    )
    return SessionMiddleware(broker, secret_key=secrets.token_hex(16))


def shoot(browser: Any, url: str, *, dark: bool, phone: bool) -> None:
    size = {"width": 390, "height": 844} if phone else {"width": 1100, "height": 640}
    context = browser.new_context(
        viewport=size,
        device_scale_factor=2 if phone else 1,
        color_scheme="dark" if dark else "light",
        reduced_motion="reduce",  # steady pictures
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    assert page.request.get(url + "/login?name=Ada").ok
    page.goto(f"{url}/?dark={int(dark)}&inline={int(phone)}")
    host = "oneinbox-call" if phone else "oneinbox-widget"
    name = f"{'phone' if phone else 'desktop'}-{'dark' if dark else 'light'}"

    def snap(state: str) -> None:
        page.mouse.move(0, 0)
        page.wait_for_timeout(150)
        path = OUT / f"widget-{name}-{state}.png"
        page.screenshot(path=str(path))
        print(path.relative_to(ROOT))

    def settle() -> None:
        page.wait_for_timeout(700)  # the widget's double-click guard

    button = page.locator(f"{host} [part=button]")
    button.wait_for()
    snap("idle")

    held: list[Any] = []
    page.route("**/oneinbox/start-call", lambda route: held.append(route))
    button.click()
    page.wait_for_function("() => window.OneInbox.state === 'connecting'")
    page.wait_for_timeout(300)
    snap("connecting")
    page.unroute("**/oneinbox/start-call")  # lets the held request through

    page.wait_for_function("() => window.OneInbox.state === 'active'")
    page.locator(f"{host} [part=agent-state]").get_by_text("Speaking").wait_for()
    page.locator(f"{host} [part=transcript]").get_by_text("Hi Ada").wait_for()
    page.wait_for_timeout(1200)
    snap("active")
    settle()
    page.locator(f"{host} [part=mute]").click()
    snap("muted")
    settle()
    button.click()
    page.wait_for_function("() => window.OneInbox.state === 'ended'")
    snap("ended")

    page.route(
        "**/oneinbox/start-call",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "42", "content-type": "application/json"},
            body='{"error": {"code": "rate_limited", "message": '
            '"You have made too many calls. Please wait a moment."}}',
        ),
    )
    settle()
    button.click()
    page.wait_for_function("() => window.OneInbox.state === 'error'")
    page.wait_for_timeout(300)
    snap("error")
    context.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(agents={AGENT: AgentSettings()})
    emulator_slot = Served(emulator, bind())
    emulator.bind(emulator_slot.url)
    site_slot = Served(host_app(emulator), bind())
    with BackgroundServers([site_slot, emulator_slot]), launched() as browser:
        for phone in (False, True):
            for dark in (False, True):
                shoot(browser, site_slot.url, dark=dark, phone=phone)
    print(html.escape("done"))


if __name__ == "__main__":
    main()
