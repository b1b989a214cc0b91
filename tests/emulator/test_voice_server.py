"""The voice server against a Python LiveKit participant: signalling, media, data, endings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from livekit.protocol import models
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from oneinbox_emulator.app import Emulator
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings

from .lkpeer import PyParticipant
from .support import LiveEmulator, auth, serving, tamper, until

pytestmark = pytest.mark.anyio


async def joined(live: LiveEmulator, *, single_pc: bool) -> tuple[dict[str, Any], PyParticipant]:
    call = await live.create_call("Ada")
    participant = PyParticipant(call["server_url"], call["participant_token"], single_pc=single_pc)
    await participant.join()
    async with asyncio.timeout(8):
        await participant.connected.wait()
    return call, participant


def open_peers(emulator: Emulator) -> int:
    sessions = [room.caller for room in emulator.voice.rooms.values() if room.caller]
    return sum(1 for s in sessions for p in s.peer_connections if p.connectionState != "closed")


@pytest.mark.parametrize("single_pc", [True, False], ids=["v1", "v0"])
async def test_a_call_from_join_to_hang_up(live: LiveEmulator, single_pc: bool) -> None:
    call, me = await joined(live, single_pc=single_pc)
    try:
        join = me.heard.join
        assert join.server_info.version and join.participant.permission.can_publish
        assert join.subscriber_primary is (not single_pc)
        agent = join.other_participants[0]
        assert agent.kind == models.ParticipantInfo.Kind.AGENT and agent.tracks[0].sid

        greeting = "Hi Ada! This is the OneInbox demo agent. Say something."
        await until(lambda: ("agent", greeting) in me.heard.transcripts)
        await until(lambda: any(s[1] == greeting for s in me.heard.streams))
        identity, _, attributes = next(s for s in me.heard.streams if s[1] == greeting)
        assert identity == "agent"
        assert attributes["lk.transcribed_track_id"] == agent.tracks[0].sid
        assert attributes["lk.transcription_final"] == "true"
        # The greeting is real audio: well above silence, and it reached us over RTP.
        await until(lambda: me.heard.peak_dbfs > -30)
        assert "speaking" in me.heard.agent_states
        assert me.heard.published and me.heard.published[0].track.sid.startswith("TR_")

        record = await live.record(call["id"])
        assert record["status"] == "in_progress" and record["started_at"]
        # The server decoded our microphone (a tone at about -12 dBFS).
        heard = live.emulator.voice.caller_audio[call["id"]]
        await until(lambda: heard.peak_dbfs > -25)

        await me.ping(1234)
        await until(lambda: 1234 in me.heard.pongs)

        await me.leave()
        await until(lambda: live.emulator.registry.get(call["id"]).status == "completed")
        record = await live.record(call["id"])
        assert record["end_reason"] == "user_hangup"
        assert record["duration_seconds"] > 0
        assert record["messages"][0] == {
            "role": "agent",
            "content": greeting,
            "time": record["messages"][0]["time"],
        }
        assert call["room_name"] not in live.emulator.voice.rooms
    finally:
        await me.close()


async def test_a_caller_who_speaks_gets_answers_and_a_user_transcript(live: LiveEmulator) -> None:
    call, me = await joined(live, single_pc=True)
    try:
        # The tone is continuous speech to the detector; once the greeting is over the agent
        # listens, and after our first pause it answers.
        await until(lambda: "listening" in me.heard.agent_states, timeout=8)
        await asyncio.sleep(0.6)  # the detector needs 0.25 s of speech to call it speech
        me.mic.silent = True
        await until(lambda: any(t[0] != "agent" for t in me.heard.transcripts), timeout=5)
        user_lines = [t for t in me.heard.transcripts if t[0] != "agent"]
        assert user_lines[0][1].startswith("(caller spoke ") and user_lines[0][1].endswith(" s)")
        assert user_lines[0][0] == me.heard.join.participant.identity
        await until(lambda: "thinking" in me.heard.agent_states)
        # Like OneInbox, the record shows the transcript only once the call is over.
        assert (await live.record(call["id"]))["messages"] == []
        # The answer's first audio went out (the greeting's was the first).
        timings = live.emulator.registry.get(call["id"]).timings
        await until(lambda: len(timings.samples.get("tts_ttfb", [])) == 2)
        await live.client.post(f"/v1/calls/{call['id']}/stop", headers=auth())
        record = await live.record(call["id"])
        assert [m["role"] for m in record["messages"]][:3] == ["agent", "user", "agent"]
        # The latency figures come from this very call: one turn, two utterances spoken.
        latency = record["latency"]
        assert latency["eou_delay"]["samples"] == 1
        assert 550 <= latency["eou_delay"]["p50_ms"] <= 800  # 0.6 s of silence ends a turn
        assert latency["llm_ttft"]["samples"] == 1 and latency["llm_ttft"]["min_ms"] >= 45
        assert latency["tts_ttfb"]["samples"] == 2
        assert 0 <= latency["tts_ttfb"]["max_ms"] < 1000
        connect = latency["connect"]
        assert all(connect[k] is not None and connect[k] >= 0 for k in connect), connect
        assert record["analysis"]["user_turns"] == 1 and record["analysis"]["successful"]
        assert "Ada spoke once" in record["ai_summary"]
    finally:
        await me.close()


async def test_stopping_the_call_through_the_api_sends_the_caller_away(
    live: LiveEmulator,
) -> None:
    call, me = await joined(live, single_pc=True)
    try:
        assert open_peers(live.emulator) == 1
        room = live.emulator.voice.rooms[call["room_name"]]
        session = room.caller
        assert session is not None and room.open_tasks > 0
        response = await live.client.post(f"/v1/calls/{call['id']}/stop", headers=auth())
        assert response.json()["status"] == "completed"
        await until(lambda: me.heard.leave is not None)
        assert me.heard.leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
        assert not me.heard.leave.can_reconnect
        await until(me.left.is_set)
        await live.emulator.voice.settle()
        assert live.emulator.voice.rooms == {}
        # Every peer connection and task of the room is gone.
        assert [p.connectionState for p in session.peer_connections] == ["closed"]
        assert room.open_tasks == 0 and session.closed
        assert (await live.record(call["id"]))["end_reason"] == "api_stop"
    finally:
        await me.close()


async def test_max_duration_ends_the_call(live_short: LiveEmulator) -> None:
    call, me = await joined(live_short, single_pc=False)
    try:
        await until(lambda: me.heard.leave is not None, timeout=5)
        record = await live_short.record(call["id"])
        assert record["end_reason"] == "max_duration"
        assert 0.8 < record["duration_seconds"] < 3
    finally:
        await me.close()


async def test_a_dropped_socket_ends_the_call_after_the_departure_timeout(
    live: LiveEmulator,
) -> None:
    call, me = await joined(live, single_pc=True)
    try:
        assert me.ws is not None
        await me.ws.close()  # no leave: the client could come back
        await asyncio.sleep(0.3)
        assert live.emulator.registry.get(call["id"]).status == "in_progress"
        await until(lambda: live.emulator.registry.get(call["id"]).status == "completed", 4)
        assert live.emulator.registry.get(call["id"]).end_reason == "connection_lost"
    finally:
        await me.close()


async def test_a_peer_that_never_connects_is_sent_away() -> None:
    emulator = Emulator(
        voice=VoiceOptions(departure_timeout=0.2, timings=SessionTimings(connect_timeout=0.5))
    )
    async with serving(emulator) as live:
        call = await live.create_call()
        url = f"{call['server_url']}/rtc?access_token={call['participant_token']}"
        started = time.monotonic()
        async with connect(url) as ws:
            messages = []
            async with asyncio.timeout(5):
                async for raw in ws:  # join, the subscriber offer we never answer, then leave
                    messages.append(raw)
        assert time.monotonic() - started < 3
        from livekit.protocol import rtc

        last = rtc.SignalResponse()
        last.ParseFromString(messages[-1])
        assert last.leave.reason == models.DisconnectReason.JOIN_FAILURE
        await until(lambda: emulator.registry.get(call["id"]).status == "failed", 3)
        assert emulator.voice.rooms == {}


async def test_the_upgrade_is_refused_with_the_reason_status(live: LiveEmulator) -> None:
    call = await live.create_call()
    tampered = tamper(call["participant_token"])
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{call['server_url']}/rtc?access_token={tampered}"):
            pass
    # Refused before the upgrade; the validate endpoint tells why (see the next test).
    assert refused.value.response.status_code == 403


async def test_validate_explains_every_refusal() -> None:
    emulator = Emulator(voice=VoiceOptions(single_peer_connection=False))
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        created = await client.post("/v1/calls/web", json={"agent_id": "agt_demo"}, headers=auth())
        token = created.json()["participant_token"]
        expired = emulator.signer.mint(room=created.json()["room_name"], identity="x", ttl=-60)
        foreign = emulator.signer.mint(room="room_nobody", identity="x")

        async def validate(path: str, token: str | None) -> httpx.Response:
            params = {"access_token": token} if token is not None else {}
            return await client.get(path, params=params)

        ok = await validate("/rtc/validate", token)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "*"
        missing = await validate("/rtc/validate", None)
        assert missing.status_code == 401 and "no access token" in missing.text
        tampered = await validate("/rtc/validate", tamper(token))
        assert tampered.status_code == 401 and "signature" in tampered.text
        old = await validate("/rtc/validate", expired)
        assert old.status_code == 401 and old.text == "access token has expired"
        nowhere = await validate("/rtc/validate", foreign)
        assert nowhere.status_code == 404 and "requested room does not exist" in nowhere.text
        # v1 is turned off here: 404 *without* that phrase makes livekit-client fall back to v0.
        v1 = await validate("/rtc/v1/validate", token)
        assert v1.status_code == 404 and "requested room does not exist" not in v1.text

        await client.post(f"/v1/calls/{created.json()['id']}/stop", headers=auth())
        ended = await validate("/rtc/validate", token)
        assert ended.status_code == 404 and "the call has ended" in ended.text


async def test_a_second_join_for_the_call_replaces_the_first(live: LiveEmulator) -> None:
    call, first = await joined(live, single_pc=True)
    second = PyParticipant(call["server_url"], call["participant_token"], single_pc=False)
    try:
        await second.join()
        async with asyncio.timeout(8):
            await second.connected.wait()
        await until(lambda: first.heard.leave is not None)
        assert first.heard.leave.reason == models.DisconnectReason.DUPLICATE_IDENTITY
        await asyncio.sleep(0.3)
        assert live.emulator.registry.get(call["id"]).status == "in_progress"
        await until(lambda: second.heard.peak_dbfs > -40)  # the agent talks to the newcomer
    finally:
        await first.close()
        await second.close()
