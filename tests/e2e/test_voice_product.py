"""Issue 14 on a live call (the demo site, the emulator's voice server and agent): one
transcript event per final line, the greeting included; the agent's state, the call time
and the mic level; the microphone picker and a device going away; a dying voice server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from oneinbox_emulator.voice.server import Refusal

from .support import BUTTON, GREETING, Stack, call_id, start_by_click, wait_state, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PANEL = "oneinbox-call [part=panel]"

RECORD = """() => {
  const log = (window.__record = []);
  for (const type of ["state", "transcript", "agent", "error", "ended"]) {
    document.addEventListener("oneinbox:" + type, (e) => log.push({type, detail: e.detail}));
  }
}"""


def recorded(page: Any, type_: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.__record")
    return [e for e in found if type_ is None or e["type"] == type_]


def test_one_transcript_event_per_final_line_and_the_greeting_after_active(page: Any) -> None:
    page.evaluate(RECORD)
    start_by_click(page)
    page.locator(PANEL).get_by_text(GREETING).wait_for()
    page.get_by_text(re.compile("You: \\(caller spoke")).wait_for(timeout=15_000)
    page.wait_for_timeout(500)  # the text stream of the last line comes after its packet
    events = recorded(page)
    lines = [e["detail"] for e in events if e["type"] == "transcript"]
    finals: dict[str, int] = {}
    for index, line in enumerate(lines):
        assert line["id"] not in finals, f"an event after the final one: {line}"
        if line["final"]:
            finals[line["id"]] = index
    assert len(finals) >= 2
    greeting = [t for t in lines if t["final"] and GREETING.endswith(t["text"])]
    assert len(greeting) == 1
    active = next(
        i for i, e in enumerate(events) if e["type"] == "state" and e["detail"]["state"] == "active"
    )
    first_line = next(i for i, e in enumerate(events) if e["type"] == "transcript")
    assert first_line > active
    # The view shows each line once.
    assert page.locator(PANEL).get_by_text(GREETING).count() == 1
    page.click(BUTTON)
    wait_state(page, "ended")


def test_agent_state_call_time_and_mic_level(page: Any) -> None:
    page.evaluate(RECORD)
    start_by_click(page)
    agent = page.locator("oneinbox-call [part=agent-state]")
    agent.get_by_text(re.compile("Speaking|Listening|Thinking")).wait_for()
    page.wait_for_function(
        "() => ['speaking', 'listening'].every(s => window.__record.some("
        "e => e.type === 'agent' && e.detail.state === s))",
        timeout=15_000,
    )
    clock = page.locator("oneinbox-call [role=timer]")
    first = clock.inner_text()
    assert re.fullmatch(r"\d+:\d\d", first)
    page.wait_for_function(
        "t => document.querySelector('oneinbox-call').shadowRoot"
        ".querySelector('[role=timer]').textContent !== t",
        arg=first,
    )
    # The fake microphone speaks: the level inside Mute lights up.
    page.wait_for_function(
        "() => +document.querySelector('oneinbox-call').shadowRoot"
        ".querySelector('.lv').dataset.level > 0",
        timeout=10_000,
    )
    page.click(BUTTON)
    wait_state(page, "ended")


def test_the_microphone_picker_and_a_device_going_away(page: Any, fresh_stack: Stack) -> None:
    # Chromium's fake devices: more than one audio input, so the picker shows.
    start_by_click(page)
    heard = fresh_stack.emulator.voice.caller_audio[call_id(page)]
    picker = page.locator("oneinbox-call [part=devices]")
    picker.wait_for()
    options = picker.locator("option").all()
    assert len(options) > 1
    before = page.evaluate("() => window.__mics.length")
    current = picker.input_value()
    other = next(v for v in (o.get_attribute("value") for o in options) if v != current)
    picker.select_option(other)
    page.wait_for_function("n => window.__mics.length > n", arg=before)
    page.wait_for_function("() => window.OneInbox._debug.mic.readyState === 'live'")
    assert page.evaluate("() => window.OneInbox.state") == "active"
    # The headset is unplugged: the track ends by itself. The call carries on with the
    # default microphone and says so.
    count = page.evaluate("() => window.__mics.length")
    page.evaluate("() => window.OneInbox._debug.mic.dispatchEvent(new Event('ended'))")
    page.locator("oneinbox-call [role=status]").get_by_text(
        re.compile("Your microphone was disconnected. Now using")
    ).wait_for()
    page.wait_for_function("n => window.__mics.length > n", arg=count)
    assert page.evaluate("() => window.OneInbox.state") == "active"
    # The agent hears the caller on the new microphone (livekit-client muted the track
    # that ended; the replacement must be heard).
    voiced = heard.voiced_seconds
    page.wait_for_timeout(1000)
    wait_until(lambda: heard.voiced_seconds > voiced + 0.5, timeout=8)
    page.wait_for_timeout(700)  # the double-click guard: 600 ms after a state change
    page.click(BUTTON)
    wait_state(page, "ended")
    page.wait_for_function("() => window.__mics.every(t => t.readyState === 'ended')")


def test_a_dying_voice_server_is_connection_lost_not_a_calm_end(
    page: Any, fresh_stack: Stack
) -> None:
    page.evaluate(RECORD)
    start_by_click(page)
    the_call = call_id(page)
    voice = fresh_stack.emulator.voice
    room_name = fresh_stack.record(the_call)["room_name"]

    async def die() -> None:
        # Refuse every new join (a reconnection), then drop the caller's connections
        # without a word, as a crashed server would.
        voice._admit = lambda query, v1: Refusal(503, "the voice server is down")  # type: ignore[method-assign]
        session = voice.rooms[room_name].caller
        assert session is not None
        for pc in session.peer_connections:
            await pc.close()
        await session.socket.close(1011)

    try:
        fresh_stack.servers.run(die())
        wait_state(page, "error", timeout=25_000)
    finally:
        del voice._admit
    assert page.evaluate("() => window.OneInbox.error.code") == "connection_lost"
    ended = recorded(page, "ended")
    assert [e["detail"]["reason"] for e in ended] == ["connection_lost"]
    assert ended[0]["detail"]["error"] == "connection_lost"
    assert "interrupted" in page.locator("oneinbox-call [part=error]").inner_text()
