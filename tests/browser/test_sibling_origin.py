"""Issue 12 item 5 in Chromium: a trusted sibling origin embeds the button, end to end.

Three origins of one site: the host app with the broker on 127.0.0.1:P1, and the same page
on 127.0.0.1:P2 (in ``trusted_origins``) and 127.0.0.1:P3 (not). Different ports are
different origins but the same site, like ``shop.example.com`` and ``www.example.com``: the
host's ``SameSite=Lax`` session cookie goes with a same-site request, and the browser says
``Sec-Fetch-Site: same-site``, which the cross-site guard refuses unless the origin is
trusted. The page loads ``widget.js`` from the broker's origin with the tag ``script_tag``
renders for an absolute prefix (``crossorigin`` and ``integrity``), under a strict CSP.
"""

from __future__ import annotations

from typing import Any

import pytest

from .support import (
    GREETING,
    TIMEOUT_MS,
    VoiceStack,
    events,
    login_at,
    settle,
    violations,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.browser


def responses_of(page: Any) -> dict[str, Any]:
    """Every response the page received, by URL (the widget's files among them)."""
    seen: dict[str, Any] = {}
    page.on("response", lambda r: seen.__setitem__(r.url.split("?")[0], r))
    return seen


def test_a_trusted_sibling_origin_calls_through_the_broker(
    fresh_voice_stack: VoiceStack, context: Any
) -> None:
    stack = fresh_voice_stack
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    seen = responses_of(page)
    login_at(page, stack.broker, "Grace")
    page.goto(stack.sibling + "/")
    before = len(stack.calls())

    settle(page)
    page.get_by_role("button", name="Talk to AI").click()
    wait_state(page, "active")
    greeting = GREETING.format(name="Grace")
    page.wait_for_function(
        "text => window.__oneinbox.events.some("
        "e => e.type === 'transcript' && e.detail.final && e.detail.text === text)",
        arg=greeting,
        timeout=TIMEOUT_MS,
    )
    # The call was created upstream, for the signed-in user of the broker's site.
    calls = stack.calls()
    assert len(calls) == before + 1
    assert calls[0].variables["customer_name"] == "Grace"
    call_id = page.evaluate("window.OneInbox.callId")
    assert calls[0].id == call_id

    # The browser asked first (a preflight), then posted with the session cookie.
    [preflight] = stack.to("start-call", "OPTIONS", stack.sibling)
    assert preflight.status == 204
    assert preflight.answer["access-control-allow-origin"] == stack.sibling
    assert preflight.answer["access-control-allow-credentials"] == "true"
    [post] = stack.to("start-call", origin=stack.sibling)
    assert post.headers["sec-fetch-site"] == "same-site"
    assert post.headers["sec-fetch-mode"] == "cors"
    assert "session=" in post.headers.get("cookie", "")
    assert post.status == 201
    assert post.answer["access-control-allow-origin"] == stack.sibling

    # The widget's files came from the broker's origin in CORS mode (integrity needs it).
    loader = seen[f"{stack.broker}/oneinbox/widget.js"]
    [chunk] = [r for url, r in seen.items() if "/oneinbox/call-" in url]
    for response in (loader, chunk):
        sent = response.request.all_headers()
        assert (sent["sec-fetch-mode"], sent["origin"]) == ("cors", stack.sibling), response.url
        assert response.headers["access-control-allow-origin"] == "*"

    settle(page)
    page.get_by_role("button", name="End call").click()
    wait_state(page, "ended")
    wait_until(lambda: [e for e in stack.to("end-call", origin=stack.sibling) if e.status])
    [ended] = stack.to("end-call", origin=stack.sibling)
    assert ended.status == 200, ended
    assert ended.answer["access-control-allow-origin"] == stack.sibling
    wait_until(lambda: stack.emulator.registry.get(call_id).ended)
    assert [e for e in events(page, "error")] == []
    assert violations(page) == []
    assert errors == []


def test_an_untrusted_origin_of_the_same_site_gets_no_call(
    fresh_voice_stack: VoiceStack, context: Any
) -> None:
    """The widget's files are public, so the page shows the button; but the broker answers
    the preflight without Access-Control-Allow-Origin, so the browser never sends the
    start-call (which would carry the session cookie: the site is the same)."""
    stack = fresh_voice_stack
    page = context.new_page()
    login_at(page, stack.broker, "Mallory")
    page.goto(stack.stranger + "/")
    before = len(stack.calls())

    settle(page)
    page.get_by_role("button", name="Talk to AI").click()
    wait_state(page, "error")
    assert page.evaluate("window.OneInbox.error.code") == "network_error"
    [preflight] = stack.to("start-call", "OPTIONS", stack.stranger)
    assert not [k for k in preflight.answer if k.startswith("access-control-")]
    assert stack.to("start-call", origin=stack.stranger) == []
    assert len(stack.calls()) == before

    # Posted anyway by a page script: the browser blocks it the same way.
    outcome = page.evaluate(
        """url => fetch(url, {method: "POST", credentials: "include",
             headers: {"Content-Type": "application/json"}, body: "{}"})
           .then(r => "answered " + r.status, e => e.name)""",
        f"{stack.broker}/oneinbox/start-call",
    )
    assert outcome == "TypeError"
    assert stack.to("start-call", origin=stack.stranger) == []
    assert len(stack.calls()) == before
