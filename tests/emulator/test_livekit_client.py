"""The voice server against the unmodified livekit-client in Chromium, without the widget.

A failure here and not in tests/e2e points at the voice server; the other way round, at
the widget or the demo app.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from oneinbox_emulator.app import Emulator
from oneinbox_emulator.serving import BackgroundServers, Served, bind
from oneinbox_emulator.voice.server import VoiceOptions

from .support import auth, quick_emulator, tamper

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INSTRUMENT = (Path(__file__).parent / "instrument.js").read_text()

# Joins with livekit-client and records what a widget would use.
JOIN = """async ({url, token, options}) => {
  const LK = window.LivekitClient;
  const room = new LK.Room();
  const log = (window.__log = []);
  room.on(LK.RoomEvent.TranscriptionReceived, (segments, who) =>
    segments.forEach((s) => log.push(["transcription", who && who.identity, s.id, s.text])));
  room.registerTextStreamHandler("lk.transcription", async (reader, from) => {
    const text = await reader.readAll();
    log.push(["stream", from.identity, reader.info.attributes["lk.segment_id"], text]);
  });
  room.on(LK.RoomEvent.ParticipantAttributesChanged, (changed, who) =>
    log.push(["state", who.identity, changed["lk.agent.state"]]));
  room.on(LK.RoomEvent.TrackSubscribed, (track, pub, who) => {
    document.body.appendChild(track.attach());
    log.push(["subscribed", who.identity, track.sid]);
  });
  room.on(LK.RoomEvent.Disconnected, (reason) => log.push(["disconnected", reason]));
  window.__room = room;
  try {
    await room.connect(url, token, options);
  } catch (e) {
    return { error: { reason: e.reason, status: e.status, message: e.message } };
  }
  await room.localParticipant.setMicrophoneEnabled(true);
  return { identity: room.localParticipant.identity };
}"""


class Harness:
    def __init__(self, servers: BackgroundServers, emulator: Emulator, v0_only: Emulator) -> None:
        self.servers = servers
        self.emulator = emulator
        self.v0_only = v0_only
        self.page_url = servers.urls[2] + "/"

    def create_call(self, emulator: Emulator | None = None, name: str = "Ada") -> dict[str, Any]:
        emulator = emulator or self.emulator
        response = httpx.post(
            f"{emulator.base_url}/v1/calls/web",
            json={"agent_id": "agt_demo", "variables": {"customer_name": name}},
            headers=auth(),
        )
        assert response.status_code == 201
        call: dict[str, Any] = response.json()
        return call


@pytest.fixture(scope="module")
def harness(livekit_js: Path) -> Iterator[Harness]:
    page = Starlette(
        routes=[
            Route("/", lambda _: HTMLResponse("<!doctype html><title>lk</title><body></body>")),
            Route("/livekit-client.js", lambda _: FileResponse(livekit_js)),
        ]
    )
    emulator = quick_emulator()
    v0_only = Emulator(voice=VoiceOptions(single_peer_connection=False))
    served = [Served(emulator, bind()), Served(v0_only, bind()), Served(page, bind(), "off")]
    emulator.bind(served[0].url)
    v0_only.bind(served[1].url)
    with BackgroundServers(served) as servers:
        yield Harness(servers, emulator, v0_only)


@pytest.fixture
def page(chromium: Any, harness: Harness) -> Iterator[Any]:
    context = chromium.new_context()
    context.set_default_timeout(10_000)
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto(harness.page_url)
    page.add_script_tag(url="/livekit-client.js")
    try:
        yield page
    finally:
        context.close()


def join(page: Any, call: dict[str, Any], **options: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        JOIN, {"url": call["server_url"], "token": call["participant_token"], "options": options}
    )
    return result


def log(page: Any, kind: str) -> list[list[Any]]:
    return [entry for entry in page.evaluate("window.__log") if entry[0] == kind]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("single_pc", [True, False], ids=["v1-default", "v0-dual-pc"])
def test_livekit_client_completes_a_call(page: Any, harness: Harness, single_pc: bool) -> None:
    call = harness.create_call(name="Grace")
    options = {} if single_pc else {"singlePeerConnection": False}
    assert "identity" in join(page, call, **options)

    # The agent's track is subscribed and its audio plays: RTP bytes and a level above 0.
    wait_until(lambda: log(page, "subscribed"))
    page.wait_for_function("window.__inboundAudio().then(a => a.bytes > 0 && a.level > 0)")
    greeting = "Hi Grace! This is the OneInbox demo agent. Say something."
    wait_until(lambda: any(e[3] == greeting for e in log(page, "transcription")))
    wait_until(lambda: any(e[3] == greeting for e in log(page, "stream")))
    # Both transcript forms name the same segment, so a client can show one line.
    legacy = next(e for e in log(page, "transcription") if e[3] == greeting)
    stream = next(e for e in log(page, "stream") if e[3] == greeting)
    assert legacy[1] == stream[1] == "agent" and legacy[2] == stream[2]
    # The agent's state is a participant attribute. (livekit-client applies updates that
    # arrive while it is still connecting but fires no event for them, so read the value.)
    page.wait_for_function(
        "['speaking', 'listening'].includes("
        "window.__room.remoteParticipants.get('agent').attributes['lk.agent.state'])"
    )

    # Chromium's fake microphone reached the server with energy.
    heard = harness.emulator.voice.caller_audio[call["id"]]
    wait_until(lambda: heard.peak_dbfs > -40)

    page.evaluate("window.__room.disconnect()")
    wait_until(lambda: harness.emulator.registry.get(call["id"]).status == "completed")
    record = harness.emulator.registry.get(call["id"])
    assert record is not None and record.end_reason == "user_hangup"
    page.wait_for_function("window.__mics.every(t => t.readyState === 'ended')")


def test_the_server_ending_the_call_disconnects_the_client(page: Any, harness: Harness) -> None:
    call = harness.create_call()
    join(page, call)
    wait_until(lambda: log(page, "subscribed"))
    httpx.post(f"{harness.emulator.base_url}/v1/calls/{call['id']}/stop", headers=auth())
    wait_until(lambda: log(page, "disconnected"), timeout=5)
    participant_removed = 4  # livekit DisconnectReason.PARTICIPANT_REMOVED
    assert log(page, "disconnected")[0][1] == participant_removed
    page.wait_for_function("window.__pcs.every(pc => pc.connectionState === 'closed')")


def test_a_tampered_token_is_refused_with_the_reason(page: Any, harness: Harness) -> None:
    call = harness.create_call()
    forged = dict(call, participant_token=tamper(call["participant_token"]))
    started = time.monotonic()
    outcome = join(page, forged)
    assert time.monotonic() - started < 3
    assert outcome["error"]["status"] == 401
    assert outcome["error"]["message"].endswith("access token signature is invalid")


def test_an_expired_token_is_refused_with_the_reason(page: Any, harness: Harness) -> None:
    call = harness.create_call()
    expired = harness.emulator.signer.mint(room=call["room_name"], identity="late", ttl=-5)
    outcome = join(page, dict(call, participant_token=expired))
    assert outcome["error"]["status"] == 401
    assert outcome["error"]["message"].endswith("access token has expired")


def test_a_server_without_v1_makes_the_default_client_fall_back(
    page: Any, harness: Harness
) -> None:
    call = harness.create_call(harness.v0_only)
    assert "identity" in join(page, call)  # default options: tries /rtc/v1 first
    page.wait_for_function("window.__inboundAudio().then(a => a.level > 0)")
    # The fallback built two peer connections (publisher and subscriber).
    page.wait_for_function(
        "window.__pcs.filter(pc => pc.connectionState === 'connected').length == 2"
    )
