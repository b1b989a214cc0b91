"""The widget in Debian's Chromium against the real middleware and the fake OneInbox.

What needs a live voice server (audio both ways, transcripts, the agent leaving) is
proven by the emulator's end-to-end tests; here every path up to the voice server is.
"""

from __future__ import annotations

import gzip
import json
import re
from importlib import resources
from typing import Any

import pytest

from oneinbox_asgi.widget import script_tag

from ..chromium import CHROMIUM, LAUNCH_ARGS
from .support import (
    API_KEY,
    FORBIDDEN_MESSAGE,
    PERMISSION_PROMPT,
    RATE_LIMIT,
    RECORDER,
    TIMEOUT_MS,
    Site,
    closed_port,
    events,
    login,
    mic_state,
    settle,
    states,
    violations,
    wait_mic_released,
    wait_state,
    wait_until,
    widget_page,
)

pytestmark = pytest.mark.browser

STATIC = resources.files("oneinbox_asgi").joinpath("static")
CHUNK = re.compile(r"/oneinbox/call-[0-9a-f]+\.js$")
LOADER_BUDGET = 6 * 1024
CHUNK_BUDGET = 160 * 1024

# The messages a person reads (the widget's own words; the server's come from its answer).
MESSAGES = {
    "voice_unreachable": "Could not reach the voice server.",
    "mic_denied": "Microphone access is blocked.",
    "no_microphone": "No microphone was found.",
    "mic_in_use": "Your microphone is in use by another app",
    "insecure_context": "Voice calls need a secure (HTTPS) page.",
    "network_error": "Could not reach the server.",
    "load_failed": "The call could not be loaded.",
}


# The Permissions API answering "prompt" for the microphone (the test browser's fake UI
# makes it "granted"): the widget then asks for the microphone before start-call.
def talk(page: Any, name: str = "Talk to AI") -> None:
    settle(page)
    page.get_by_role("button", name=name).click()


def alert_text(page: Any) -> str:
    text: str = page.get_by_role("alert").inner_text(timeout=TIMEOUT_MS)
    return text


def last_error(page: Any) -> dict[str, Any]:
    errors = events(page, "error")
    assert errors, "no oneinbox:error event"
    detail: dict[str, Any] = errors[-1]["detail"]
    return detail


def click_until_error(page: Any, name: str = "Talk to AI") -> None:
    """Clicks, then waits for one more oneinbox:error than there was before the click."""
    before = len(events(page, "error"))
    talk(page, name)
    page.wait_for_function(
        "n => window.__oneinbox.events.filter(e => e.type === 'error').length > n",
        arg=before,
        timeout=TIMEOUT_MS,
    )
    assert page.evaluate("window.OneInbox.state") == "error"


def wait_for_room(page: Any) -> None:
    """Waits until start-call answered and livekit-client is connecting."""
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)


def assert_no_secret(text: str) -> None:
    assert API_KEY not in text
    assert "oi_sk_" not in text


# -- loading -----------------------------------------------------------------------


def test_loader_is_small_and_livekit_is_fetched_only_after_the_click(
    fresh_site: Site, page: Any
) -> None:
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    with page.expect_response(re.compile(r"/oneinbox/widget\.js")) as loader_info:
        page.goto(widget_page(fresh_site))
    loader = loader_info.value
    page.get_by_role("button", name="Talk to AI").wait_for()
    page.wait_for_load_state("networkidle")

    headers = loader.all_headers()
    assert loader.status == 200
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) <= LOADER_BUDGET
    assert loader.body() == STATIC.joinpath("widget.js").read_bytes()
    assert not [u for u in urls if CHUNK.search(u)], urls
    assert page.evaluate("window.OneInbox.state") == "idle"

    login(page, fresh_site)
    with page.expect_response(CHUNK) as chunk_info:
        talk(page)
    chunk = chunk_info.value
    assert chunk.status == 200
    assert chunk.all_headers()["cache-control"] == "public, max-age=31536000, immutable"
    assert int(chunk.all_headers()["content-length"]) <= CHUNK_BUDGET
    assert b"livekit" in chunk.body().lower()
    wait_state(page, "error")
    assert violations(page) == []


def test_idle_prefetch_is_opt_in(fresh_site: Site, page: Any) -> None:
    with page.expect_request(CHUNK, timeout=TIMEOUT_MS):
        page.goto(widget_page(fresh_site, prefetch="idle"))
    assert page.evaluate("window.OneInbox.state") == "idle"
    assert fresh_site.posted("start-call") == []


# -- the call's steps, and every way one ends before the voice server -----------------


def test_click_starts_a_call_and_an_unreachable_voice_server_is_an_error(
    fresh_site: Site, page: Any
) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        talk(page)
    wait_state(page, "error")

    assert states(page) == ["connecting", "error"]
    (sent,) = fresh_site.posted("start-call")
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["sec-fetch-site"] == "same-origin"
    assert "authorization" not in sent.headers
    assert sent.json() == {}
    assert_no_secret(json.dumps(sent.headers) + sent.body.decode())
    answer = answer_info.value
    assert answer.status == 201
    assert_no_secret(answer.text())
    assert set(answer.json()) >= {"call_id", "server_url", "participant_token"}
    # The secret went upstream from the server, and only from there.
    (upstream,) = [r for r in fresh_site.fake.received if r.path == "/v1/calls/web"]
    assert upstream.headers["authorization"] == f"Bearer {API_KEY}"

    assert last_error(page)["code"] == "voice_unreachable"
    assert alert_text(page).startswith(MESSAGES["voice_unreachable"])
    assert mic_state(page) == "ended"
    ended = events(page, "ended")
    assert [e["detail"]["reason"] for e in ended] == ["error"]
    assert ended[0]["detail"]["callId"] == answer.json()["call_id"]
    # The button offers a new call again.
    page.get_by_role("button", name="Talk to AI").wait_for()
    assert violations(page) == []
    assert page.errors == []


def test_signed_out_caller_sees_the_servers_401_message(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site))
    _refusal(page, 401, "unauthorized")
    assert fresh_site.fake.received == []


def _refusal(page: Any, status: int, code: str) -> dict[str, Any]:
    """Clicks; expects start-call's refusal on screen, in the event, and the mic released."""
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        click_until_error(page)
    answer = answer_info.value
    assert answer.status == status
    body = answer.json()
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert message
    assert alert_text(page) == message
    detail = last_error(page)
    assert detail["code"] == "start_refused"
    assert (detail["status"], detail["serverCode"], detail["message"]) == (status, code, message)
    wait_mic_released(page)
    return {"detail": detail, "headers": answer.all_headers()}


def test_rate_limited_caller_sees_the_servers_429_message(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    allowed = int(RATE_LIMIT.split("/")[0])
    for _ in range(allowed):  # each fails at the (unreachable) voice server, after start-call
        click_until_error(page)
        assert last_error(page)["code"] == "voice_unreachable"
    refused = _refusal(page, 429, "rate_limited")
    retry_after = int(refused["headers"]["retry-after"])
    assert 0 < retry_after <= 60
    assert refused["detail"]["retryAfter"] == retry_after
    assert len(fresh_site.posted("start-call")) == allowed + 1
    created = [r for r in fresh_site.fake.received if r.path == "/v1/calls/web"]
    assert len(created) == allowed  # the refused one never went upstream


def test_caller_at_the_concurrent_call_cap_sees_the_servers_429_message(
    fresh_site: Site, context: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    first = context.new_page()
    login(first, fresh_site)
    url = widget_page(fresh_site)
    first.goto(url)
    talk(first)
    wait_for_room(first)  # a call is open (connecting) in the first tab
    second = context.new_page()
    second.goto(url)
    refused = _refusal(second, 429, "too_many_calls")
    assert "retryAfter" not in refused["detail"]
    # Hanging up in the first tab frees the slot (end-call), and the second may call.
    talk(first, "End call")
    wait_state(first, "ended")
    wait_until(lambda: fresh_site.posted("end-call"))
    with second.expect_response("**/oneinbox/start-call") as answer_info:
        talk(second)
    assert answer_info.value.status == 201, answer_info.value.text()
    wait_for_room(second)
    talk(second, "End call")
    wait_state(second, "ended")


def test_forbidden_caller_sees_the_servers_403_message(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site, name="Blocked")
    page.goto(widget_page(fresh_site))
    refused = _refusal(page, 403, "forbidden")
    assert refused["detail"]["message"] == FORBIDDEN_MESSAGE
    assert fresh_site.fake.received == []  # refused before any upstream call


def test_server_error_without_json_gets_a_generic_message(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.route(
        "**/oneinbox/start-call",
        lambda route: route.fulfill(
            status=502, body="<h1>Bad gateway</h1>", content_type="text/html"
        ),
    )
    talk(page)
    wait_state(page, "error")
    assert last_error(page)["code"] == "start_failed"
    assert last_error(page)["status"] == 502
    assert "Please try again later" in alert_text(page)
    wait_mic_released(page)


def test_microphone_permission_denied(fresh_site: Site, chromium_browser: Any) -> None:
    # The shared browser auto-accepts permission prompts (--use-fake-ui-for-media-stream),
    # which overrides a denial; this one keeps the fake device but honours the denial.
    args = [a for a in LAUNCH_ARGS if a != "--use-fake-ui-for-media-stream"]
    browser = chromium_browser.browser_type.launch(executable_path=CHROMIUM, args=args)
    try:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(RECORDER)
        page = context.new_page()
        page.errors = []
        cdp = context.new_cdp_session(page)
        cdp.send(
            "Browser.setPermission",
            {"permission": {"name": "microphone"}, "setting": "denied", "origin": fresh_site.url},
        )
        login(page, fresh_site)
        page.goto(widget_page(fresh_site))
        talk(page)
        wait_state(page, "error")
        assert last_error(page)["code"] == "mic_denied"
        assert alert_text(page).startswith(MESSAGES["mic_denied"])
        assert fresh_site.posted("start-call") == []  # no call is created without a microphone
    finally:
        browser.close()


MIC_FAILURES = [
    ("NotFoundError", "no_microphone"),
    ("OverconstrainedError", "no_microphone"),
    ("NotReadableError", "mic_in_use"),
    ("AbortError", "mic_in_use"),
    ("SecurityError", "mic_denied"),
    ("NotAllowedError", "mic_denied"),
]


def test_microphone_failures_have_their_own_messages(fresh_site: Site, context: Any) -> None:
    # getUserMedia's failures as the browser reports them (DOMException names), one
    # after the other on one page: each click retries after the previous error. The
    # microphone is not yet allowed (as for a first call), so start-call waits for it.
    context.add_init_script(PERMISSION_PROMPT)
    context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => "
        "Promise.reject(new DOMException('simulated', window.__micFailure));"
    )
    page = context.new_page()
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    for dom_error, code in MIC_FAILURES:
        page.evaluate("name => { window.__micFailure = name; }", dom_error)
        click_until_error(page)
        assert last_error(page)["code"] == code, dom_error
        assert alert_text(page).startswith(MESSAGES[code]), dom_error
    assert fresh_site.posted("start-call") == []
    assert states(page) == ["connecting", "error"] * len(MIC_FAILURES)


def test_insecure_page_is_told_it_needs_https(fresh_site: Site, context: Any) -> None:
    # http://insecure.test is not a secure context (127.0.0.1 would be). Playwright
    # answers it from the real server, so nothing leaves loopback.
    def forward(route: Any) -> None:
        url = route.request.url.replace("http://insecure.test", fresh_site.url)
        route.fulfill(response=route.fetch(url=url))

    context.route("http://insecure.test/**", forward)
    page = context.new_page()
    page.goto(widget_page(fresh_site).replace(fresh_site.url, "http://insecure.test"))
    assert page.evaluate("isSecureContext") is False
    talk(page)
    wait_state(page, "error")
    assert last_error(page)["code"] == "insecure_context"
    assert alert_text(page) == MESSAGES["insecure_context"]
    assert fresh_site.posted("start-call") == []
    assert not [r for r in fresh_site.requests if CHUNK.search(r.path)]


def test_unreachable_server_releases_the_microphone(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.route("**/oneinbox/start-call", lambda route: route.abort("connectionrefused"))
    talk(page)
    wait_state(page, "error")
    assert last_error(page)["code"] == "network_error"
    assert alert_text(page).startswith(MESSAGES["network_error"])
    wait_mic_released(page)


def test_call_chunk_failing_to_load_ends_the_call_it_started(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.route(CHUNK, lambda route: route.abort("failed"))
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        talk(page)
    wait_state(page, "error")
    assert last_error(page)["code"] == "load_failed"
    assert alert_text(page).startswith(MESSAGES["load_failed"])
    wait_mic_released(page)
    _assert_end_call_sent(page, fresh_site, answer_info.value.json())


def _assert_end_call_sent(page: Any, site: Site, answer: dict[str, Any]) -> None:
    """The call start-call created is ended with its end_token, exactly once."""
    token = answer.get("end_token")
    assert isinstance(token, str) and token, f"start-call answered no end_token: {answer}"
    wait_until(lambda: site.posted("end-call"))
    page.wait_for_timeout(100)  # a second end-call would come right after the first
    sent = site.posted("end-call")
    assert [r.json() for r in sent] == [{"end_token": token}]
    assert sent[0].headers["content-type"] == "application/json"


def test_hang_up_while_connecting(fresh_site: Site, page: Any, hanging_voice_server: str) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        talk(page)
    wait_for_room(page)
    assert page.evaluate("window.OneInbox.state") == "connecting"
    assert mic_state(page) == "live"
    talk(page, "End call")
    wait_state(page, "ended")
    assert states(page) == ["connecting", "ended"]
    assert mic_state(page) == "ended"
    assert [e["detail"]["reason"] for e in events(page, "ended")] == ["hangup"]
    assert events(page, "error") == []
    page.wait_for_function(
        "() => window.OneInbox._debug.room.state === 'disconnected'", timeout=TIMEOUT_MS
    )
    assert page.get_by_role("status").inner_text() == "Call ended"
    _assert_end_call_sent(page, fresh_site, answer_info.value.json())


def test_hang_up_while_the_microphone_prompt_is_open(fresh_site: Site, context: Any) -> None:
    # getUserMedia answers only when the test says so (as when a person reads the
    # prompt): the track that arrives after the hang-up must be stopped at once, and no
    # call created.
    context.add_init_script(PERMISSION_PROMPT)
    context.add_init_script(
        """
        const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        window.__streams = [];
        navigator.mediaDevices.getUserMedia = (c) => new Promise((resolve) => {
          window.__answerPrompt = () =>
            resolve(real(c).then((s) => { window.__streams.push(s); return s; }));
        });
        """
    )
    page = context.new_page()
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    talk(page)
    wait_state(page, "connecting")
    talk(page, "End call")
    wait_state(page, "ended")
    page.evaluate("window.__answerPrompt()")
    page.wait_for_function(
        "() => window.__streams.length === 1 && "
        "window.__streams[0].getTracks().every(t => t.readyState === 'ended')",
        timeout=TIMEOUT_MS,
    )
    assert mic_state(page) == "ended"
    page.wait_for_timeout(300)  # a start-call would be posted right after the microphone
    assert fresh_site.posted("start-call") == []
    assert page.evaluate("window.OneInbox.state") == "ended"
    assert states(page) == ["connecting", "ended"]


def test_leaving_the_page_ends_the_call(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        talk(page)
    wait_for_room(page)
    # The pagehide handler itself: releases the microphone at once.
    page.evaluate("dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false }))")
    assert mic_state(page) == "ended"
    assert [e["detail"]["reason"] for e in events(page, "ended")] == ["page_hide"]
    _assert_end_call_sent(page, fresh_site, answer_info.value.json())


def test_navigating_away_sends_end_call(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    with page.expect_response("**/oneinbox/start-call") as answer_info:
        talk(page)
    wait_for_room(page)
    token = answer_info.value.json().get("end_token")
    assert token, "start-call answered no end_token"
    page.goto(f"{fresh_site.url}/elsewhere")
    # The keepalive request outlives the page: the server's log shows it.
    wait_until(lambda: fresh_site.posted("end-call"))
    assert [r.json() for r in fresh_site.posted("end-call")] == [{"end_token": token}]


# -- embedding forms, configuration, CSP ------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        "script-src 'self' 'nonce-{nonce}'; style-src 'self'",
        # With default-src, connect-src must name the voice server (wss:// in production).
        "script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'self'; default-src 'self'; "
        "connect-src 'self' ws://127.0.0.1:* http://127.0.0.1:*",
    ],
)
def test_strict_csp_produces_no_violation(fresh_site: Site, page: Any, policy: str) -> None:
    import secrets

    nonce = secrets.token_urlsafe(12)
    url = widget_page(fresh_site, body="<oneinbox-call></oneinbox-call>", csp=False)
    html = page.request.get(url).text()
    nonced = re.sub(r'nonce="[^"]*"', f'nonce="{nonce}"', html)

    def serve(route: Any) -> None:
        route.fulfill(
            status=200,
            body=nonced,
            headers={
                "content-type": "text/html; charset=utf-8",
                "content-security-policy": policy.format(nonce=nonce),
            },
        )

    page.route(url, serve)
    login(page, fresh_site)
    page.goto(url)
    button = page.get_by_role("button", name="Talk to AI")
    button.wait_for()
    # Styled by the constructable stylesheet, which style-src 'self' allows.
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(31, 79, 209)"
    assert button.evaluate("b => getComputedStyle(b).borderRadius") == "999px"
    talk(page)  # loads the call chunk under the same policy
    wait_state(page, "error")
    assert last_error(page)["code"] == "voice_unreachable"
    assert violations(page) == []
    assert page.errors == []


def test_a_page_without_the_nonce_cannot_run_the_widget(fresh_site: Site, page: Any) -> None:
    # The control for the test above: the recorder does see violations.
    url = widget_page(fresh_site, csp=False)
    html = page.request.get(url).text()
    page.route(
        url,
        lambda route: route.fulfill(
            status=200,
            body=html,
            headers={
                "content-type": "text/html",
                "content-security-policy": "script-src 'nonce-other'; style-src 'self'",
            },
        ),
    )
    page.goto(url)
    page.wait_for_function("() => window.__oneinbox.violations.length > 0", timeout=TIMEOUT_MS)
    assert page.evaluate("typeof window.OneInbox") == "undefined"


def test_floating_button_is_configured_by_data_attributes(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site, name="Grace")
    page.goto(
        widget_page(
            fresh_site,
            agent="sales",
            label="Ask us",
            label_end="Bye",
            label_mute="Quiet",
            label_unmute="Speak",
            position="top-left",
            var_topic="billing",
        )
    )
    host = page.locator("oneinbox-widget")
    assert host.get_attribute("data-position") == "top-left"
    assert host.evaluate("h => getComputedStyle(h).position") == "fixed"
    box = host.bounding_box()
    assert box is not None and box["x"] < 100 and box["y"] < 100

    # Keyboard: the button is reachable with Tab and starts the call with Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.shadowRoot.activeElement.innerText") == "Ask us"
    page.keyboard.press("Enter")
    wait_for_room(page)
    assert page.get_by_role("status").inner_text() == "Connecting…"
    (sent,) = fresh_site.posted("start-call")
    assert sent.json() == {"agent": "sales", "variables": {"topic": "billing"}}
    (upstream,) = [r for r in fresh_site.fake.received if r.path == "/v1/calls/web"]
    assert upstream.json()["agent_id"] == "agt_sales"
    # The server's hook wins over, and adds to, what the browser sent.
    assert upstream.json()["variables"] == {"topic": "billing", "customer_name": "Grace"}

    # Mute keeps its name; its state is aria-pressed (data-label-unmute is no longer used).
    settle(page)
    mute = page.get_by_role("button", name="Quiet")
    assert mute.get_attribute("aria-pressed") == "false"
    mute.click()
    assert mute.get_attribute("aria-pressed") == "true"
    assert page.get_by_role("button", name="Speak").count() == 0
    assert page.evaluate("window.OneInbox._debug.mic.enabled") is False
    mute.click()
    assert mute.get_attribute("aria-pressed") == "false"
    assert page.evaluate("window.OneInbox._debug.mic.enabled") is True
    page.get_by_role("button", name="Bye").click()
    wait_state(page, "ended")
    assert mic_state(page) == "ended"
    assert page.get_by_role("button", name="Quiet").count() == 0  # hidden when not in a call
    assert violations(page) == []


def test_inline_element_replaces_the_floating_button(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(
        widget_page(
            fresh_site,
            body='<oneinbox-call agent="sales" label="Call sales"></oneinbox-call>',
        )
    )
    page.get_by_role("button", name="Call sales").wait_for()
    assert page.locator("oneinbox-widget").count() == 0
    element = page.locator("oneinbox-call")
    assert (
        element.evaluate("e => e.shadowRoot !== null && getComputedStyle(e).position") == "static"
    )
    element.evaluate(
        "e => { window.__elementEvents = []; e.addEventListener('oneinbox:state', "
        "ev => window.__elementEvents.push(ev.detail.state)); }"
    )
    talk(page, "Call sales")
    wait_state(page, "error")
    state_events = page.evaluate("window.__elementEvents")
    assert state_events == ["connecting", "error"]
    (sent,) = fresh_site.posted("start-call")
    assert sent.json() == {"agent": "sales"}
    assert violations(page) == []


def test_manual_mode_renders_nothing_and_the_js_api_works(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site, mount="manual"))
    page.wait_for_function("() => !!window.OneInbox", timeout=TIMEOUT_MS)
    assert page.locator("oneinbox-widget").count() == 0
    assert page.get_by_role("button").count() == 0
    assert page.evaluate("window.OneInbox.state") == "idle"

    # start() resolves once the call is active or was ended before; here it is ended.
    page.evaluate(
        "() => { window.__started = window.OneInbox.start({ variables: { topic: 'demo' } })"
        ".then(() => 'resolved', (e) => 'rejected ' + e.code); }"
    )
    wait_for_room(page)
    assert page.evaluate("window.OneInbox.state") == "connecting"
    assert page.evaluate("window.OneInbox.callId").startswith("call_")
    page.evaluate("window.OneInbox.setMuted(true)")
    assert page.evaluate("[window.OneInbox.muted, window.OneInbox._debug.mic.enabled]") == [
        True,
        False,
    ]
    page.evaluate("window.OneInbox.end()")
    assert page.evaluate("window.__started") == "resolved"
    assert page.evaluate("window.OneInbox.state") == "ended"
    assert mic_state(page) == "ended"
    recorded = [(e["type"], e["detail"]) for e in events(page) if e["type"] != "ready"]
    call_id = page.evaluate("window.OneInbox.callId")
    assert recorded == [
        ("state", {"state": "connecting", "previous": "idle"}),
        ("mute", {"muted": True}),
        ("state", {"state": "ended", "previous": "connecting"}),
        ("ended", {"reason": "hangup", "callId": call_id}),
    ]
    (sent,) = fresh_site.posted("start-call")
    assert sent.json() == {"variables": {"topic": "demo"}}

    # A failing start() rejects with the error's code, after the same events.
    fresh_site.fake.server_url = f"ws://127.0.0.1:{closed_port()}"
    outcome = page.evaluate(
        "() => window.OneInbox.start().then(() => 'resolved', (e) => [e.code, e.message])"
    )
    assert outcome[0] == "voice_unreachable"
    assert outcome[1].startswith(MESSAGES["voice_unreachable"])
    assert page.evaluate("window.OneInbox.error.code") == "voice_unreachable"
    assert mic_state(page) == "ended"
    assert states(page)[-2:] == ["connecting", "error"]


def test_script_tag_integrity_is_checked_by_the_browser(fresh_site: Site, page: Any) -> None:
    tag = script_tag()
    forged = re.sub(r'integrity="sha384-[^"]+"', 'integrity="sha384-' + "A" * 64 + '"', tag)
    url = fresh_site.page(lambda nonce: f"<!doctype html><title>x</title>{forged}", csp=False)
    page.goto(url)  # async scripts delay the load event goto waits for: it has run or failed
    assert page.evaluate("typeof window.OneInbox") == "undefined"
    url = fresh_site.page(lambda nonce: f"<!doctype html><title>x</title>{tag}", csp=False)
    page.goto(url)
    page.wait_for_function("() => !!window.OneInbox", timeout=TIMEOUT_MS)


def test_gzip_of_the_built_files_is_what_the_server_sends(fresh_site: Site, page: Any) -> None:
    response = page.request.get(
        f"{fresh_site.url}/oneinbox/widget.js", headers={"Accept-Encoding": "gzip"}
    )
    assert response.ok
    assert response.body() == STATIC.joinpath("widget.js").read_bytes()
    assert len(gzip.compress(response.body(), 9)) <= LOADER_BUDGET
