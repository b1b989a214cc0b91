"""Issue 14 in Chromium: the widget as a voice product (double clicks, signed-out visitors,
ended and error states, the rate-limit countdown, end-call retries, focus, contrast and
axe-core in every state). What needs a live voice server (transcripts, the agent's state,
devices during a call) is in tests/e2e."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .support import (
    PERMISSION_PROMPT,
    TIMEOUT_MS,
    Site,
    events,
    login,
    settle,
    states,
    violations,
    wait_state,
    wait_until,
    widget_page,
)

pytestmark = pytest.mark.browser

AXE = Path(__file__).parents[2] / "widget" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core (a dev npm dependency of the widget) on the page, WCAG 2.0-2.2 A and AA."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: cd widget && npm ci")
    if not page.evaluate("() => !!window.axe"):
        page.evaluate(AXE.read_text())  # evaluate, not a <script>: the page's CSP stays strict
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {runOnly: {type: 'tag', values:
        ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})).violations
        .map(v => ({id: v.id,
          nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))"""
    )
    return found


def button_box(page: Any, name: str) -> dict[str, float]:
    box: dict[str, float] = page.get_by_role("button", name=name).bounding_box()
    return box


# -- (a) double clicks ------------------------------------------------------------------


@pytest.mark.parametrize("mount", ["floating", "inline"])
def test_a_double_click_starts_the_call_and_does_not_hang_up_or_mute(
    fresh_site: Site, page: Any, hanging_voice_server: str, mount: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    body = "<p>Questions?</p><oneinbox-call></oneinbox-call>" if mount == "inline" else ""
    page.goto(widget_page(fresh_site, body=body))
    talk = page.get_by_role("button", name="Talk to AI")
    before = talk.bounding_box()
    talk.dblclick()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    assert page.evaluate("window.OneInbox.state") == "connecting"
    assert states(page) == ["connecting"]
    assert events(page, "mute") == []
    assert page.evaluate("window.OneInbox.muted") is False
    # The main button did not move, and Mute did not appear where it was.
    end = page.get_by_role("button", name="End call")
    after = end.bounding_box()
    assert after is not None and before is not None
    assert (after["x"], after["y"], after["width"]) == (before["x"], before["y"], before["width"])
    mute = page.get_by_role("button", name="Mute").bounding_box()
    assert mute["x"] + mute["width"] <= before["x"] or mute["x"] >= before["x"] + before["width"]
    # A second double click later hangs up once, and does not start a new call.
    settle(page)
    end.dblclick()
    wait_state(page, "ended")
    page.wait_for_timeout(300)
    assert states(page) == ["connecting", "ended"]
    assert len(fresh_site.posted("start-call")) == 1


# -- (d) signed-out visitors ----------------------------------------------------------


def test_a_signed_out_visitor_is_sent_to_sign_in_without_a_microphone_prompt(
    fresh_site: Site, context: Any
) -> None:
    context.add_init_script(
        "window.__gum = 0;"
        "const g = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);"
        "navigator.mediaDevices.getUserMedia = (c) => { window.__gum++; return g(c); };"
    )
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(widget_page(fresh_site, signed_out="", sign_in_url="/login?next=here"))
    page.get_by_role("button", name="Talk to AI").click()
    wait_state(page, "error")
    assert page.evaluate("window.__gum") == 0
    assert page.evaluate("window.OneInbox.error.code") == "signed_out"
    assert page.get_by_role("alert").inner_text() == "Please sign in to start a voice call."
    link = page.get_by_role("link", name="Sign in")
    assert link.get_attribute("href") == "/login?next=here"
    assert fresh_site.posted("start-call") == []
    assert not [u for u in urls if "/call-" in u]  # no LiveKit either
    assert axe_violations(page) == []


def test_a_signed_out_visitor_can_be_shown_no_button(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site, signed_out="hide"))
    page.wait_for_function("() => !!window.OneInbox", timeout=TIMEOUT_MS)
    page.wait_for_timeout(100)
    assert page.get_by_role("button", name="Talk to AI").count() == 0


def test_a_401_offers_the_sign_in_link(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site, sign_in_url="/login"))
    page.get_by_role("button", name="Talk to AI").click()
    wait_state(page, "error")
    assert page.get_by_role("link", name="Sign in").get_attribute("href") == "/login"


# -- (e) ended and error states ---------------------------------------------------------


def test_the_rate_limit_counts_down_from_retry_after(fresh_site: Site, page: Any) -> None:
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.route(
        "**/oneinbox/start-call",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "3", "content-type": "application/json"},
            body='{"error": {"code": "rate_limited", "message": "Too many calls."}}',
        ),
    )
    page.get_by_role("button", name="Talk to AI").click()
    wait_state(page, "error")
    panel = page.locator("oneinbox-widget [part=panel]")
    panel.get_by_text(re.compile(r"You can try again in [23] s\.")).wait_for()
    talk = page.get_by_role("button", name="Talk to AI")
    assert talk.get_attribute("aria-disabled") == "true"
    settle(page)
    # Blocked: no new call. (force: Playwright itself waits for aria-disabled to go away.)
    talk.click(force=True)
    assert states(page) == ["connecting", "error"]
    panel.get_by_text("You can try again in 1 s.").wait_for()
    panel.get_by_text("You can try again now.").wait_for(timeout=3000)
    assert talk.get_attribute("aria-disabled") == "false"
    talk.click()
    page.wait_for_function(
        "() => window.__oneinbox.events.filter(e => e.type === 'error').length === 2"
    )
    assert states(page) == ["connecting", "error"] * 2


def test_an_ended_call_can_be_dismissed_and_collapses_with_focus_kept(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    settle(page)
    # Mute has focus when the call ends: focus goes to the main button, not to <body>.
    page.get_by_role("button", name="Mute").focus()
    page.evaluate("window.OneInbox.end()")
    wait_state(page, "ended")
    focused = page.evaluate("document.activeElement.shadowRoot?.activeElement?.innerText")
    assert focused == "Talk to AI"
    close = page.get_by_role("button", name="Close")
    close.wait_for()
    assert page.get_by_role("status").inner_text() == "Call ended"
    close.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('oneinbox-widget').shadowRoot"
        ".querySelector('[role=status]').textContent === ''",
        timeout=TIMEOUT_MS,
    )
    assert page.get_by_role("button", name="Close").count() == 0
    focused = page.evaluate("document.activeElement.shadowRoot?.activeElement?.innerText")
    assert focused == "Talk to AI"


def test_live_regions_are_there_from_the_start(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").wait_for()
    shadow = "document.querySelector('oneinbox-widget').shadowRoot"
    for role in ("status", "alert", "log"):
        shown = page.evaluate(
            f"r => {{ const e = {shadow}.querySelector('[role=' + r + ']');"
            " return !!e && getComputedStyle(e).display !== 'none' && !e.closest('[hidden]'); }",
            role,
        )
        assert shown, role


# -- (h) end-call retried, its failure told ------------------------------------------------


def test_end_call_is_retried_and_its_final_failure_is_told(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    tries: list[str] = []

    def fail(route: Any) -> None:
        tries.append(route.request.post_data or "")
        route.fulfill(status=503, body="{}", content_type="application/json")

    page.route("**/oneinbox/end-call", fail)
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    page.evaluate("window.OneInbox.end()")
    page.wait_for_function(
        "() => window.__oneinbox.events.some("
        "e => e.type === 'error' && e.detail.code === 'end_failed')",
        timeout=15_000,
    )
    assert len(tries) == 5
    assert len(set(tries)) == 1  # the same end_token each time
    assert "could not confirm" in page.get_by_role("status").inner_text()
    assert page.evaluate("window.OneInbox.state") == "ended"


def test_end_call_is_retried_after_a_passing_failure(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    seen: list[str] = []

    def first_fails(route: Any) -> None:
        seen.append(route.request.post_data or "")
        if len(seen) == 1:
            route.fulfill(status=503, body="{}", content_type="application/json")
        else:
            route.fallback()

    page.route("**/oneinbox/end-call", first_fails)
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    page.evaluate("window.OneInbox.end()")
    # Polled through Playwright: its route handlers run only while it is called.
    for _ in range(50):
        if fresh_site.posted("end-call"):
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(1500)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert len(fresh_site.posted("end-call")) == 1
    assert [e for e in events(page, "error") if e["detail"]["code"] == "end_failed"] == []


# -- (i) the Permissions API fast path --------------------------------------------------


def test_start_call_waits_for_the_microphone_unless_it_is_allowed(
    fresh_site: Site, context: Any
) -> None:
    # getUserMedia held open: with the microphone already allowed start-call goes at once;
    # with a prompt to answer, nothing is posted before the microphone is there.
    hold = (
        "const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);"
        "navigator.mediaDevices.getUserMedia = (c) => new Promise((r) => {"
        " window.__answer = () => r(real(c)); });"
    )
    context.add_init_script(hold)
    page = context.new_page()
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    assert page.evaluate("navigator.permissions.query({name:'microphone'}).then(p => p.state)") == (
        "granted"
    )
    page.get_by_role("button", name="Talk to AI").click()
    wait_until(lambda: fresh_site.posted("start-call"))
    page.evaluate("window.OneInbox.end()")

    other = context.new_page()
    other.add_init_script(PERMISSION_PROMPT)
    other.goto(widget_page(fresh_site))
    before = len(fresh_site.posted("start-call"))
    other.get_by_role("button", name="Talk to AI").click()
    other.wait_for_timeout(400)
    assert len(fresh_site.posted("start-call")) == before
    other.evaluate("window.__answer()")
    wait_until(lambda: len(fresh_site.posted("start-call")) == before + 1)
    other.evaluate("window.OneInbox.end()")


# -- (f) focus ring, targets, axe ------------------------------------------------------


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"[\d.]+", css)[:3])


@pytest.mark.parametrize("page_colour", ["#111111", "#ffffff", "#1f4fd1"])
def test_the_focus_ring_stands_out_on_the_page(
    fresh_site: Site, page: Any, page_colour: str
) -> None:
    page.goto(widget_page(fresh_site, body=f'<meta name="x" content="{page_colour}">'))
    page.evaluate(f"document.body.style.background = '{page_colour}'")
    page.keyboard.press("Tab")
    ring = page.evaluate(
        """() => { const b = document.activeElement.shadowRoot.activeElement;
        const s = getComputedStyle(b); return {outline: s.outlineColor, width: s.outlineWidth,
        shadow: s.boxShadow, page: getComputedStyle(document.body).backgroundColor}; }"""
    )
    colours = [rgb(ring["outline"])] + [
        rgb(m) for m in re.findall(r"rgba?\([^)]*\)", ring["shadow"])
    ]
    page_rgb = rgb(ring["page"])
    assert page_rgb == tuple(float(int(page_colour[i : i + 2], 16)) for i in (1, 3, 5))
    best = max(contrast(c, page_rgb) for c in colours)
    assert best >= 3, (ring, best)
    assert float(ring["width"].removesuffix("px")) >= 2


def test_targets_are_44px_and_axe_finds_nothing_in_any_state(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, fresh_site)
    page.goto(widget_page(fresh_site, body="<oneinbox-call></oneinbox-call>", mount="auto"))
    talk = page.get_by_role("button", name="Talk to AI")
    assert talk.bounding_box()["height"] >= 44
    assert axe_violations(page) == []  # idle
    fresh_site.fake.server_url = hanging_voice_server
    talk.click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    settle(page)
    assert page.get_by_role("button", name="Mute").bounding_box()["height"] >= 44
    assert axe_violations(page) == []  # connecting
    page.get_by_role("button", name="Mute").click()
    assert axe_violations(page) == []  # muted
    page.evaluate("window.OneInbox.end()")
    wait_state(page, "ended")
    assert page.get_by_role("button", name="Close").bounding_box()["height"] >= 44
    assert axe_violations(page) == []  # ended
    fresh_site.fake.server_url = "ws://127.0.0.1:9"
    settle(page)
    talk.click()
    wait_state(page, "error")
    assert axe_violations(page) == []  # error
    assert violations(page) == []


def test_strings_are_translatable(fresh_site: Site, page: Any) -> None:
    page.goto(
        widget_page(
            fresh_site,
            label="Mit KI sprechen",
            text_signed_out="Bitte melden Sie sich an.",
            text_sign_in="Anmelden",
            sign_in_url="/login",
            signed_out="",
            text_transcript="Mitschrift",
        )
    )
    page.get_by_role("button", name="Mit KI sprechen").click()
    wait_state(page, "error")
    assert page.get_by_role("alert").inner_text() == "Bitte melden Sie sich an."
    assert page.get_by_role("link", name="Anmelden").count() == 1
    assert page.get_by_role("log", name="Mitschrift").count() == 1


# -- (f) system settings: dark mode, forced colours, reduced motion ------------------------


def _style(page: Any, selector: str, prop: str) -> str:
    value: str = page.evaluate(
        "([sel, prop]) => { const h = document.querySelector('oneinbox-widget');"
        " return getComputedStyle(h.shadowRoot.querySelector(sel))[prop]; }",
        [selector, prop],
    )
    return value


def test_the_systems_dark_mode_is_honoured_unless_the_page_says_light(
    fresh_site: Site, page: Any
) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").wait_for()
    assert _style(page, ".b", "backgroundColor") == "rgb(168, 193, 255)"
    page.goto(widget_page(fresh_site, theme="light"))
    page.get_by_role("button", name="Talk to AI").wait_for()
    assert _style(page, ".b", "backgroundColor") == "rgb(31, 79, 209)"
    page.emulate_media(color_scheme="light")
    page.goto(widget_page(fresh_site, theme="dark"))
    page.get_by_role("button", name="Talk to AI").wait_for()
    assert _style(page, ".b", "backgroundColor") == "rgb(168, 193, 255)"


def test_forced_colours_give_buttons_a_boundary(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").wait_for()
    assert _style(page, ".b", "borderTopStyle") == "solid"
    assert _style(page, ".b", "borderTopColor") == "rgba(0, 0, 0, 0)"  # transparent normally
    page.emulate_media(forced_colors="active")
    assert _style(page, ".b", "borderTopWidth") == "2px"
    assert _style(page, ".b", "borderTopColor") != "rgba(0, 0, 0, 0)"


def test_reduced_motion_keeps_the_level_bars_still(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    meter = "document.querySelector('oneinbox-widget').shadowRoot.querySelector('.lv')"
    heights = f"() => [...{meter}.children].map(i => getComputedStyle(i).height)"
    page.evaluate(f"() => {{ {meter}.dataset.level = '3'; }}")
    page.wait_for_timeout(300)  # the bars' transition
    assert page.evaluate(heights) == ["6px", "10px", "14px"]
    assert _style(page, ".lv i", "transitionDuration") != "0s"
    page.emulate_media(reduced_motion="reduce")
    assert len(set(page.evaluate(heights))) == 1
    assert _style(page, ".lv i", "transitionDuration") == "0s"
    page.evaluate("window.OneInbox.end()")


def test_an_ended_calls_panel_collapses_by_itself_but_not_under_the_pointer(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    page.evaluate("window.OneInbox.end()")
    wait_state(page, "ended")
    status = page.get_by_role("status")
    assert status.inner_text() == "Call ended"
    page.locator("oneinbox-widget [part=panel]").hover()  # reading it: it stays
    page.wait_for_timeout(9000)
    assert status.inner_text() == "Call ended"
    page.mouse.move(0, 0)
    page.wait_for_function(
        "() => document.querySelector('oneinbox-widget').shadowRoot"
        ".querySelector('[role=status]').textContent === ''",
        timeout=5000,
    )
    assert page.get_by_role("button", name="Close").count() == 0
    assert page.evaluate("window.OneInbox.state") == "ended"


def test_focus_moving_to_the_page_collapses_the_floating_panel(
    fresh_site: Site, page: Any, hanging_voice_server: str
) -> None:
    # On a phone the floating panel covers part of the page: a link that gets focus
    # beneath it must not stay hidden.
    page.set_viewport_size({"width": 390, "height": 844})
    fresh_site.fake.server_url = hanging_voice_server
    login(page, fresh_site)
    page.goto(widget_page(fresh_site, body='<p><a href="#a">A link on the page</a></p>'))
    page.get_by_role("button", name="Talk to AI").click()
    page.wait_for_function("() => !!window.OneInbox._debug.room", timeout=TIMEOUT_MS)
    page.evaluate("window.OneInbox.end()")
    wait_state(page, "ended")
    assert page.get_by_role("status").inner_text() == "Call ended"
    page.get_by_role("link", name="A link on the page").focus()
    page.wait_for_function(
        "() => document.querySelector('oneinbox-widget').shadowRoot"
        ".querySelector('[role=status]').textContent === ''",
        timeout=TIMEOUT_MS,
    )


def test_the_floating_button_keeps_clear_of_the_safe_area(fresh_site: Site, page: Any) -> None:
    page.goto(widget_page(fresh_site))
    page.get_by_role("button", name="Talk to AI").wait_for()
    rules: str = page.evaluate(
        "() => [...document.querySelector('oneinbox-widget').shadowRoot.adoptedStyleSheets]"
        ".flatMap(s => [...s.cssRules]).map(r => r.cssText).join('\\n')"
    )
    assert "env(safe-area-inset-bottom" in rules
    assert "env(safe-area-inset-right" in rules
