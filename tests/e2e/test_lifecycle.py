"""Issue 11 in a real browser: the broker learns that a call ended from OneInbox's word, so
a tab that died never locks its user out, a hang-up while OneInbox is down is made good,
and ``on_call_ended`` fires exactly once per call, with who saw the end and why.

Each test builds its own demo + emulator (``lifecycle_stack``): the demo's broker with
webhooks on or off (the emulator then delivers its call events, or not), an
``on_call_ended`` hook that keeps every event, and the emulator's API on a port of its
own, so that it can stop answering while its voice server (LiveKit) carries on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest

from ..chromium import CHROMIUM, LAUNCH_ARGS
from .support import (
    BUTTON,
    INSTRUMENT,
    LIFECYCLE_TIMINGS,
    TIMEOUT_MS,
    LifecycleStack,
    call_id,
    kill_tree,
    lifecycle_stack,
    process_tree,
    start_by_click,
    wait_agent_audio,
    wait_state,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVENTS = """(() => {
  const log = (window.__events = []);
  for (const type of ["state", "error", "ended"]) {
    document.addEventListener("oneinbox:" + type, (e) => log.push({type, detail: e.detail}));
  }
})();"""
NOTE = "oneinbox-call [role=status]"
GUARD_MS = 700  # the widget ignores a click this soon after a state change (600 ms)
DEPARTURE_S = 10.0  # the emulator's default: a dropped caller's time to come back


def open_page(browser: Any, site_url: str, storage_state: Any = None) -> tuple[Any, Any]:
    """A tab on the demo's home page: signed in as a new "Ada", or with a saved session."""
    context = browser.new_context(storage_state=storage_state)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(INSTRUMENT)
    context.add_init_script(EVENTS)
    if storage_state is None:
        assert context.request.post(f"{site_url}/login", form={"name": "Ada"}).ok
    page = context.new_page()
    page.goto(site_url + "/")
    page.wait_for_function("() => !!window.OneInbox")
    return context, page


def pumped(page: Any, condition: Callable[[], object], timeout: float) -> None:
    """``wait_until`` for a condition on the page's Playwright events, which the sync API
    delivers only while it is called: poll with the page's own wait."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        page.wait_for_timeout(50)


def widget_events(page: Any, type_: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.__events")
    return [e["detail"] for e in found if e["type"] == type_]


def click_to_start(page: Any) -> None:
    """Press "Talk to AI" and see the call go active; a refusal fails with what it said."""
    page.wait_for_timeout(GUARD_MS)
    page.evaluate("() => { window.__arm(); }")
    page.click(BUTTON)
    page.wait_for_function("() => ['active', 'error'].includes(window.OneInbox.state)")
    if page.evaluate("() => window.OneInbox.state") == "error":
        raise AssertionError(f"the call did not start: {widget_events(page, 'error')[-1]}")


def hang_up(page: Any) -> None:
    page.wait_for_timeout(GUARD_MS)
    page.click(BUTTON)
    wait_state(page, "ended")


def the_one_end(stack: LifecycleStack, call_id: str) -> Any:
    """The call's only ``on_call_ended`` event (more than one fails, showing them all)."""
    found = stack.ends_of(call_id)
    assert len(found) == 1, f"on_call_ended fired {len(found)} times for {call_id}: {found}"
    return found[0]


def settle(stack: LifecycleStack, *call_ids: str) -> None:
    """Every report of these calls' ends that is coming has come: each call has its event,
    and the emulator has no webhook delivery left (retries included)."""
    wait_until(lambda: all(stack.ends_of(c) for c in call_ids), timeout=15)
    if stack.emulator.webhooks is not None:
        wait_until(lambda: stack.emulator.webhooks.pending == 0, timeout=40)  # type: ignore[union-attr]
    time.sleep(0.5)  # an event fired late, after its delivery was answered, shows by now


def delivered(stack: LifecycleStack, call_id: str, event: str) -> bool:
    assert stack.emulator.webhooks is not None
    return any(
        o.delivered and o.call_id == call_id and o.event == event
        for o in stack.emulator.webhooks.outcomes
    )


# -- 1. a crashed tab ---------------------------------------------------------------------


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhooks", "no-webhooks"])
def test_a_crashed_tab_never_locks_its_user_out(chromium: Any, webhooks: bool) -> None:
    with lifecycle_stack(webhooks=webhooks) as stack:
        # A browser of its own, so that it can die: SIGKILL to its whole process tree (a
        # laptop's lid closed, the battery out), nothing said to the site or to OneInbox.
        marker = f"--oneinbox-e2e-tab={secrets.token_hex(4)}"  # a switch Chromium ignores
        doomed = chromium.browser_type.launch(
            executable_path=CHROMIUM, args=[*LAUNCH_ARGS, marker], headless=True
        )
        try:
            context, page = open_page(doomed, stack.site_url)
            start_by_click(page)
            wait_agent_audio(page)
            first = call_id(page)
            assert stack.record(first)["status"] == "in_progress"
            session = context.storage_state()  # the same user's cookie, for their next browser
            kill_tree(process_tree(marker))
            killed = time.monotonic()
        finally:
            with suppress(Exception):
                doomed.close()

        context, page = open_page(chromium, stack.site_url, storage_state=session)
        try:
            # At once: OneInbox still has the call in progress (its voice server gives a
            # dropped caller 10 s to come back), so the broker fails closed.
            page.click(BUTTON)
            wait_state(page, "error")
            early = widget_events(page, "error")[-1]
            assert (early["status"], early["serverCode"]) == (429, "too_many_calls"), early
            refused_at = time.monotonic() - killed

            wait_until(
                lambda: stack.record(first)["status"] != "in_progress", timeout=DEPARTURE_S + 15
            )
            oneinbox_at = time.monotonic() - killed
            assert stack.record(first)["end_reason"] == "connection_lost"
            if webhooks:  # the emulator's call.ended: the broker has freed the slot already
                wait_until(lambda: stack.ends_of(first), timeout=10)
                told_at = time.monotonic() - killed
                assert stack.ends_of(first)[0].ended_by == "webhook"
            else:
                assert stack.ends_of(first) == []  # nobody has told the broker

            click_to_start(page)  # "Talk to AI" again, as soon as OneInbox says it ended
            active_at = time.monotonic() - killed
            second = call_id(page)
            assert second != first
            wait_agent_audio(page)
            assert stack.record(second)["status"] == "in_progress"
            hang_up(page)
            settle(stack, first, second)
        finally:
            context.close()

        dead = the_one_end(stack, first)
        assert dead.ended_by == ("webhook" if webhooks else "reconciliation")
        assert dead.end_reason == "connection_lost"
        assert dead.record is not None and dead.record["status"] == "completed"
        hung_up = the_one_end(stack, second)
        assert hung_up.caller == dead.caller and str(dead.caller).startswith("u_")
        assert hung_up.ended_by in (("end_call", "webhook") if webhooks else ("end_call",))
        if webhooks:
            assert delivered(stack, first, "call.ended")
        told = f"broker told (webhook) {told_at:.1f} s, " if webhooks else ""
        LIFECYCLE_TIMINGS.append(
            f"crashed tab, {'webhooks' if webhooks else 'no webhooks (reconciliation)'}: "
            f"kill → click refused 429 {refused_at:.1f} s; kill → OneInbox ended the call "
            f"{oneinbox_at:.1f} s; {told}kill → next call active {active_at:.1f} s"
        )


# -- 2. OneInbox down during the hang-up --------------------------------------------------


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhooks", "no-webhooks"])
@pytest.mark.parametrize("back", ["within-retries", "after-give-up"])
def test_oneinbox_down_during_hang_up(chromium: Any, webhooks: bool, back: str) -> None:
    with lifecycle_stack(webhooks=webhooks) as stack:
        context, page = open_page(chromium, stack.site_url)
        try:
            ends: list[int] = []  # end-call's answers, in order
            page.on(
                "response",
                lambda r: r.url.endswith("/oneinbox/end-call") and ends.append(r.status),
            )
            start_by_click(page)
            wait_agent_audio(page)
            first = call_id(page)

            stack.api.stop()  # OneInbox's API refuses connections; its voice server is up
            hang_up(page)
            hung_up = time.monotonic()
            # The widget left the room: OneInbox ended the call, but nobody could ask it.
            wait_until(lambda: stack.record(first)["status"] == "completed")
            assert stack.record(first)["end_reason"] == "user_hangup"

            if back == "within-retries":
                pumped(page, lambda: len(ends) >= 2, timeout=10)
                assert all(status == 503 for status in ends), ends
                stack.api.start()
                back_at = time.monotonic() - hung_up
                pumped(page, lambda: 200 in ends, timeout=10)
                assert ends[-1] == 200 and widget_events(page, "error") == []
            else:
                page.wait_for_function(
                    "() => window.__events.some(e => e.detail && e.detail.code === 'end_failed')",
                    timeout=20_000,
                )
                gave_up_at = time.monotonic() - hung_up
                pumped(page, lambda: len(ends) == 5, timeout=5)  # five tries, all refused
                assert all(status == 503 for status in ends), ends
                shown = page.locator(NOTE).inner_text()
                assert shown == widget_events(page, "error")[-1]["message"], shown
                assert stack.ends_of(first) == []  # the slot is still held
                stack.api.start()
                back_at = time.monotonic() - hung_up

            click_to_start(page)  # the user's next click
            active_at = time.monotonic() - hung_up
            second = call_id(page)
            assert second != first
            hang_up(page)
            if webhooks:  # the emulator's retried call.ended came too, and changed nothing
                wait_until(lambda: delivered(stack, first, "call.ended"), timeout=40)
            settle(stack, first, second)
        finally:
            context.close()

        ended = the_one_end(stack, first)
        if back == "within-retries":
            # end-call's own retry, or the emulator's retried webhook if it came first
            expected = {"end_call", "webhook"} if webhooks else {"end_call"}
        else:
            # the start-call at the cap asked OneInbox (or a retried webhook came first)
            expected = {"reconciliation", "webhook"} if webhooks else {"reconciliation"}
        assert ended.ended_by in expected, ended
        assert ended.end_reason == (None if ended.ended_by == "end_call" else "user_hangup")
        the_one_end(stack, second)
        what = (
            "back within the widget's retries"
            if back == "within-retries"
            else (f"back after the widget gave up ({gave_up_at:.1f} s)")
        )
        LIFECYCLE_TIMINGS.append(
            f"OneInbox down at hang-up, {what}, {'webhooks' if webhooks else 'no webhooks'}: "
            f"API back {back_at:.1f} s after the hang-up; next call active {active_at:.1f} s; "
            f"ended_by {ended.ended_by}; end-call answers {ends}"
        )
