"""The voice server's parts that need no network: SDP, candidates, messages, audio, the agent."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

import aioice.ice
import av
import numpy as np
import pytest
from livekit.protocol import rtc

from oneinbox_emulator.agent import (
    REPLY_TEXT,
    AgentSettings,
    AgentState,
    DemoAgent,
    Role,
    greeting_text,
)
from oneinbox_emulator.voice import protocol
from oneinbox_emulator.voice.loopback import gather_only_on
from oneinbox_emulator.voice.media import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AgentVoice,
    Pcm,
    level_dbfs,
    load_clip,
    to_mono,
)
from oneinbox_emulator.voice.sdp import label_streams, msid_tracks_by_mid, parse_candidate
from oneinbox_emulator.voice.speech import SpeechDetector

OFFER = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=msid:5c1e-stream TR_agent1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:1",
        "a=recvonly",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:7",
        "a=msid:- 3f0c-mic-track",
        "",
    ]
)


def test_label_streams_names_the_owner_of_our_tracks_only() -> None:
    labelled = label_streams(OFFER, {"TR_agent1": "PA_agent"})
    assert "a=msid:PA_agent|TR_agent1 TR_agent1" in labelled.split("\r\n")
    assert "a=msid:- 3f0c-mic-track" in labelled  # not ours: untouched


def test_msid_tracks_by_mid() -> None:
    assert msid_tracks_by_mid(OFFER) == {"0": "TR_agent1", "7": "3f0c-mic-track"}


def candidate(text: str) -> str:
    return json.dumps({"candidate": text, "sdpMid": "0", "sdpMLineIndex": 0})


def test_trickled_candidates_stay_on_loopback() -> None:
    host = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
    parsed = parse_candidate(candidate(host), loopback_only=True)
    assert parsed.candidate is not None
    assert (parsed.candidate.ip, parsed.candidate.port, parsed.candidate.sdpMid) == (
        "127.0.0.1",
        50000,
        "0",
    )
    lan = "candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host"
    assert parse_candidate(candidate(lan), loopback_only=True).skipped_because == "not loopback"
    assert parse_candidate(candidate(lan), loopback_only=False).candidate is not None
    tcp = "candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active"
    assert parse_candidate(candidate(tcp), loopback_only=True).skipped_because == "not UDP"
    mdns = "candidate:4 1 udp 2122260223 0b1c-4d.local 50002 typ host"
    assert parse_candidate(candidate(mdns), loopback_only=False).skipped_because == "mDNS name"
    assert parse_candidate("{nope", loopback_only=True).candidate is None
    assert parse_candidate(candidate(""), loopback_only=True).candidate is None


@pytest.mark.parametrize("compressed", [True, False])
def test_the_v1_join_request_is_decoded(compressed: bool) -> None:
    request = rtc.JoinRequest(
        publisher_offer=rtc.SessionDescription(type="offer", sdp="v=0\r\n", id=1)
    )
    payload = request.SerializeToString()
    wrapped = rtc.WrappedJoinRequest(
        compression=rtc.WrappedJoinRequest.GZIP if compressed else rtc.WrappedJoinRequest.NONE,
        join_request=gzip.compress(payload) if compressed else payload,
    )
    encoded = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()
    decoded = protocol.decode_join_request(encoded)
    assert decoded.publisher_offer.sdp == "v=0\r\n" and decoded.publisher_offer.id == 1
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_join_request("bm90IGEgcHJvdG9idWY=")  # "not a protobuf", gzip flag off


def test_text_streams_are_split_into_header_chunks_and_trailer() -> None:
    from livekit.protocol import models

    speaker = protocol.Speaker("agent", "PA_a", "TR_a")
    packets = protocol.text_stream_packets(speaker, "SG_1", "héllo" * 5, chunk_size=10)
    parsed = []
    for raw in packets:
        packet = models.DataPacket()
        packet.ParseFromString(raw)
        parsed.append(packet)
    kinds = [p.WhichOneof("value") for p in parsed]
    assert kinds == ["stream_header"] + ["stream_chunk"] * 3 + ["stream_trailer"]
    header = parsed[0].stream_header
    assert header.topic == "lk.transcription" and header.attributes["lk.segment_id"] == "SG_1"
    text = b"".join(p.stream_chunk.content for p in parsed[1:-1])
    assert text.decode() == "héllo" * 5 and header.total_length == len(text)
    assert [p.stream_chunk.chunk_index for p in parsed[1:-1]] == [0, 1, 2]


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * 300 * t) * amplitude).astype(np.float32)


def feed(detector: SpeechDetector, audio: np.ndarray) -> list[float]:
    found = []
    for start in range(0, audio.size, FRAME_SAMPLES):
        frame = audio[start : start + FRAME_SAMPLES]
        utterance = detector.feed(frame, frame.size / SAMPLE_RATE)
        if utterance is not None:
            found.append(utterance.seconds)
    return found


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def test_speech_is_found_by_energy_and_measured() -> None:
    detector = SpeechDetector()
    audio = np.concatenate([silence(0.5), tone(1.4), silence(0.7), tone(0.5), silence(0.8)])
    assert feed(detector, audio) == pytest.approx([1.4, 0.5], abs=0.03)


def test_short_beeps_are_not_speech() -> None:
    # Chromium's fake microphone beeps for about 120 ms every 500 ms.
    beeping = np.concatenate([np.concatenate([tone(0.12), silence(0.38)]) for _ in range(10)])
    assert feed(SpeechDetector(), beeping) == []


def test_an_endless_sound_is_cut_into_utterances() -> None:
    assert feed(SpeechDetector(max_utterance=2.0), tone(5.0)) == pytest.approx([2.0, 2.0])


def test_levels() -> None:
    assert level_dbfs(tone(0.1, amplitude=1.0)) == pytest.approx(-3.0, abs=0.1)
    assert level_dbfs(silence(0.1)) == -120.0


def test_decoded_stereo_is_downmixed() -> None:
    stereo = np.zeros((1, 2 * FRAME_SAMPLES), np.int16)
    stereo[0, 0::2] = 16384  # left at half scale, right silent
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    mono = to_mono(frame)
    assert mono.shape == (FRAME_SAMPLES,) and mono == pytest.approx(0.25)


def test_shipped_sounds_decode_to_48k_mono_speech() -> None:
    for name in ("greeting.ogg", "reply.ogg", "goodbye.ogg"):
        clip = load_clip(name)
        assert clip.dtype == np.int16 and 1.5 < clip.size / SAMPLE_RATE < 6
        assert level_dbfs(clip.astype(np.float32) / 32768) > -30


@pytest.mark.anyio
async def test_agent_voice_plays_clips_in_frames_and_reports_when_done() -> None:
    voice = AgentVoice()
    clip = np.arange(1, 2 * FRAME_SAMPLES + 101, dtype=np.int16)
    done = voice.say(clip)
    frames = [voice.next_frame() for _ in range(4)]
    assert done.done() and not voice.speaking
    assert np.array_equal(np.concatenate(frames)[: clip.size], clip)
    assert not frames[3].any() and voice.frames_with_speech == 3
    pending = voice.say(clip)
    voice.hush()
    assert pending.done() and not voice.next_frame().any()


def test_gathering_is_scoped_to_the_media_hosts() -> None:
    outside = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    with gather_only_on(("127.0.0.1", "::1")):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
            "127.0.0.1",
            "::1",
        ]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == outside


# -- the agent, with a fake room -------------------------------------------------------------


class FakeRoom:
    def __init__(self) -> None:
        self.states: list[AgentState] = []
        self.lines: list[tuple[Role, str]] = []
        self.spoken: list[int] = []
        self.measures: list[tuple[str, float]] = []
        self.hung_up = asyncio.Event()

    def set_state(self, state: AgentState) -> None:
        self.states.append(state)

    async def speak(self, pcm: Pcm) -> None:
        self.spoken.append(pcm.size)
        await asyncio.sleep(0)

    def transcript(self, role: Role, text: str) -> None:
        self.lines.append((role, text))

    def measured(self, metric: str, ms: float) -> None:
        self.measures.append((metric, ms))

    def hang_up(self) -> None:
        self.hung_up.set()


def test_the_greeting_uses_the_callers_name() -> None:
    template = AgentSettings().greeting
    assert greeting_text(template, {"customer_name": " Ada "}).startswith("Hi Ada! ")
    assert greeting_text(template, {}).startswith("Hi! ")


async def speak_to(agent: DemoAgent, seconds: float) -> None:
    """Wait until the agent listens, then say something for ``seconds`` and pause."""
    for _ in range(200):
        if agent.state == "listening":
            break
        await asyncio.sleep(0.005)
    audio = np.concatenate([tone(seconds), silence(0.8)])
    for start in range(0, audio.size, FRAME_SAMPLES):
        agent.hear(audio[start : start + FRAME_SAMPLES], FRAME_SAMPLES / SAMPLE_RATE)


@pytest.mark.anyio
async def test_the_agent_greets_answers_and_hangs_up_after_its_turns() -> None:
    room = FakeRoom()
    agent = DemoAgent(
        AgentSettings(max_turns=2, thinking_seconds=0), {"customer_name": "Ada"}, room
    )
    task = asyncio.ensure_future(agent.run())
    await speak_to(agent, 1.0)
    await speak_to(agent, 0.5)
    async with asyncio.timeout(2):
        await room.hung_up.wait()
    await task
    assert room.lines == [
        ("agent", "Hi Ada! This is the OneInbox demo agent. Say something."),
        ("user", "(caller spoke 1.0 s)"),
        ("agent", REPLY_TEXT),
        ("user", "(caller spoke 0.5 s)"),
        ("agent", "That's all for this demo. Goodbye!"),
    ]  # fmt: skip
    assert room.states == [
        "speaking", "listening", "thinking", "speaking", "listening", "thinking", "speaking",
    ]  # fmt: skip
    assert room.spoken == [load_clip(n).size for n in ("greeting.ogg", "reply.ogg", "goodbye.ogg")]
    # Per turn: the end-of-utterance delay (the silence that ended it), then the think time.
    assert [m for m, _ in room.measures] == ["eou_delay", "llm_ttft"] * 2
    eou = [ms for m, ms in room.measures if m == "eou_delay"]
    assert all(590 <= ms <= 700 for ms in eou), eou  # end_of_speech_seconds is 0.6


@pytest.mark.anyio
async def test_the_agent_does_not_hear_while_it_speaks_and_can_echo() -> None:
    room = FakeRoom()
    agent = DemoAgent(AgentSettings(reply="echo", thinking_seconds=0), {}, room)
    agent.hear(tone(1.0), 1.0)  # during the greeting: ignored
    task = asyncio.ensure_future(agent.run())
    await speak_to(agent, 0.7)
    for _ in range(200):
        if len(room.spoken) == 2:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    assert room.lines[1:] == [
        ("user", "(caller spoke 0.7 s)"),
        ("agent", "(plays back what it heard)"),
    ]
    assert room.spoken[1] == pytest.approx(0.7 * SAMPLE_RATE, rel=0.05)  # the echo


@pytest.mark.anyio
async def test_max_turns_zero_hangs_up_right_after_the_greeting() -> None:
    room = FakeRoom()
    await DemoAgent(AgentSettings(max_turns=0), {}, room).run()
    assert [line[0] for line in room.lines] == ["agent", "agent"] and room.hung_up.is_set()
