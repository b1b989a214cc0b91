"""A person's call through the demo site: the widget, the middleware, the emulator, the agent."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from oneinbox_emulator.agent import AgentSettings

from .support import (
    BUTTON,
    ERROR,
    GREETING,
    TIMINGS,
    TRANSCRIPT,
    Stack,
    call_id,
    start_by_click,
    wait_state,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def mic_states(page: Any) -> list[str]:
    states: list[str] = page.evaluate("() => window.__mics.map(t => t.readyState)")
    return states


def wait_mic_released(page: Any) -> None:
    page.wait_for_function(
        "() => window.__mics.length > 0 && window.__mics.every(t => t.readyState === 'ended')"
    )


def wait_agent_audio(page: Any) -> None:
    """The agent's audio is playing in the page: RTP bytes in, and a level above zero."""
    page.wait_for_function("() => window.__inboundAudio().then(a => a.bytes > 0 && a.level > 0)")


def keep_timings(page: Any, name: str) -> None:
    page.wait_for_function(
        "() => window.__timing.audio !== null && window.__timing.active !== null"
    )
    t = page.evaluate("() => window.__timing")
    TIMINGS.append((name, t["active"] - t["click"], t["audio"] - t["click"]))


@pytest.mark.parametrize("signalling", ["default", "dual-pc"])
def test_a_call_through_the_widget(page: Any, fresh_stack: Stack, signalling: str) -> None:
    if signalling == "default":
        start_by_click(page)
    else:  # the JS API with livekit-client's singlePeerConnection: false (two peer connections)
        page.evaluate(
            "() => { window.__arm().start(); "
            "window.OneInbox.start({singlePeerConnection: false}).catch(() => {}); }"
        )
        wait_state(page, "active")
        page.wait_for_function(
            "() => window.__pcs.filter(pc => pc.connectionState === 'connected').length === 2"
        )
    the_call = call_id(page)

    wait_agent_audio(page)
    page.locator(TRANSCRIPT).get_by_text(GREETING).wait_for()
    cold = " (in file order the run's first call: cold browser and servers)"
    keep_timings(page, f"{signalling} signalling" + (cold if signalling == "default" else ""))
    # The caller's microphone reached the emulator, with energy, for this very call.
    heard = fresh_stack.emulator.voice.caller_audio[the_call]
    wait_until(lambda: heard.frames > 25 and heard.peak_dbfs > -50)
    assert fresh_stack.record(the_call)["status"] == "in_progress"

    page.click(BUTTON)  # hang up
    wait_state(page, "ended")
    wait_mic_released(page)
    wait_until(lambda: fresh_stack.record(the_call)["status"] == "completed")
    record = fresh_stack.record(the_call)
    # The widget leaves the room first, then asks the site to end the call (end-call →
    # stop, which then finds the call ended): the caller's hang-up names the ending.
    assert record["end_reason"] == "user_hangup"
    wait_until(
        lambda: any(r.path.endswith(f"{the_call}/stop") for r in fresh_stack.emulator.api.received)
    )
    assert 0.3 < record["duration_seconds"] < 20
    assert record["variables"] == {"customer_name": "Ada"}
    assert record["messages"][0]["content"] == GREETING.removeprefix("Agent: ")
    assert page.errors == []


def test_stopping_the_call_on_the_server_ends_it_in_the_page(page: Any, fresh_stack: Stack) -> None:
    start_by_click(page)
    the_call = call_id(page)
    wait_agent_audio(page)
    keep_timings(page, "default signalling, warm")
    fresh_stack.stop(the_call)
    wait_state(page, "ended", timeout=5_000)
    wait_mic_released(page)
    assert page.evaluate("() => window.OneInbox.error") is None
    assert fresh_stack.record(the_call)["end_reason"] == "api_stop"


def test_the_agent_hangs_up_by_itself(page: Any, fresh_stack: Stack) -> None:
    fresh_stack.use_agent(AgentSettings(max_turns=1, thinking_seconds=0.2))
    start_by_click(page)
    the_call = call_id(page)
    transcript = page.locator(TRANSCRIPT)
    # The fake microphone talks; after the greeting the agent hears one utterance...
    transcript.get_by_text("You: (caller spoke").wait_for(timeout=12_000)
    # ...says goodbye and hangs up.
    transcript.get_by_text("Agent: That's all for this demo. Goodbye!").wait_for()
    wait_state(page, "ended", timeout=8_000)
    wait_mic_released(page)
    record = fresh_stack.record(the_call)
    assert record["status"] == "completed" and record["end_reason"] == "agent_hangup"
    assert [m["role"] for m in record["messages"]] == ["agent", "user", "agent"]


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 3600  # a longer call than was granted: the signature no longer matches
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("problem", ["tampered", "expired"])
def test_a_bad_participant_token_shows_the_error_state(
    page: Any, fresh_stack: Stack, problem: str
) -> None:
    emulator = fresh_stack.emulator
    created = httpx.post(
        f"{emulator.base_url}/v1/calls/web",
        json={"agent_id": "agt_demo"},
        headers={"authorization": f"Bearer {emulator.api_key}"},
    ).json()
    if problem == "tampered":
        token = _tampered(created["participant_token"])
    else:
        token = emulator.signer.mint(room=created["room_name"], identity="caller-x", ttl=-30)
    # The site's start-call gets this call back from "OneInbox", with the bad token.
    emulator.api.misbehave(
        body=json.dumps(dict(created, participant_token=token)).encode(), times=1
    )

    page.click(BUTTON)
    wait_state(page, "error")
    error = page.evaluate("() => window.OneInbox.error")
    assert error["code"] == "voice_refused"
    shown = page.locator(ERROR).inner_text()
    assert shown == error["message"] and "refused" in shown
    wait_mic_released(page)
    # Nobody got into the room; the widget's end-call had the site stop the call.
    assert created["id"] not in emulator.voice.caller_audio
    wait_until(lambda: fresh_stack.record(created["id"])["end_reason"] == "api_stop")
