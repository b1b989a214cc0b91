"""A minimal LiveKit participant in Python (aiortc + websockets), to test the voice server
without a browser: it speaks both signalling modes the way livekit-client does, sends a
tone as its microphone, and records what the server sends back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import AudioFrame
from livekit.protocol import models, rtc
from websockets.asyncio.client import ClientConnection, connect

from oneinbox_emulator.voice.loopback import gather_only_on
from oneinbox_emulator.voice.media import level_dbfs, to_mono


class ToneTrack(AudioStreamTrack):
    """A microphone that plays a 440 Hz tone at about -12 dBFS (stays silent when muted)."""

    def __init__(self) -> None:
        super().__init__()
        self._phase = 0
        self.silent = False

    async def recv(self) -> AudioFrame:
        frame: AudioFrame = await super().recv()  # silence, paced in real time
        if not self.silent:
            n = frame.samples
            t = (np.arange(n) + self._phase) / frame.sample_rate
            self._phase += n
            pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
            tone = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            tone.sample_rate, tone.pts, tone.time_base = (
                frame.sample_rate,
                frame.pts,
                frame.time_base,
            )
            return tone
        return frame


@dataclass
class Heard:
    join: Any = None
    leave: Any = None
    agent_states: list[str] = field(default_factory=list)
    transcripts: list[tuple[str, str]] = field(default_factory=list)  # (identity, text), legacy
    streams: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    audio_frames: int = 0
    peak_dbfs: float = -120.0
    published: list[Any] = field(default_factory=list)
    pongs: list[int] = field(default_factory=list)


class PyParticipant:
    def __init__(self, server_url: str, token: str, *, single_pc: bool) -> None:
        self.server_url = server_url
        self.token = token
        self.single_pc = single_pc
        self.heard = Heard()
        self.mic = ToneTrack()
        self.ws: ClientConnection | None = None
        self.peers: list[RTCPeerConnection] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._streams: dict[str, dict[str, Any]] = {}
        self.connected = asyncio.Event()
        self.left = asyncio.Event()

    def _peer(self) -> RTCPeerConnection:
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(peer)

        @peer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._listen(track)))

        @peer.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            channel.on("message", self._on_data)

        @peer.on("connectionstatechange")
        def on_state() -> None:
            if peer.connectionState == "connected":
                self.connected.set()

        return peer

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.heard.audio_frames += 1
                self.heard.peak_dbfs = max(self.heard.peak_dbfs, level_dbfs(to_mono(frame)))

    def _on_data(self, message: bytes | str) -> None:
        packet = models.DataPacket()
        packet.ParseFromString(message if isinstance(message, bytes) else message.encode())
        kind = packet.WhichOneof("value")
        if kind == "transcription":
            for segment in packet.transcription.segments:
                self.heard.transcripts.append(
                    (packet.transcription.transcribed_participant_identity, segment.text)
                )
        elif kind == "stream_header":
            header = packet.stream_header
            self._streams[header.stream_id] = {
                "identity": packet.participant_identity,
                "attributes": dict(header.attributes),
                "text": b"",
            }
        elif kind == "stream_chunk":
            self._streams[packet.stream_chunk.stream_id]["text"] += packet.stream_chunk.content
        elif kind == "stream_trailer":
            entry = self._streams.pop(packet.stream_trailer.stream_id)
            self.heard.streams.append(
                (entry["identity"], entry["text"].decode(), entry["attributes"])
            )

    async def _send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(rtc.SignalRequest(**message).SerializeToString())

    async def join(self) -> None:
        with gather_only_on(("127.0.0.1",)):
            await self._join()

    async def _join(self) -> None:
        params: dict[str, str] = {"access_token": self.token}
        if self.single_pc:
            peer = self.publisher = self._peer()
            peer.addTransceiver("audio", direction="recvonly")
            self.mic_sender = peer.addTransceiver(self.mic, direction="sendonly").sender
            self.channel = peer.createDataChannel("_reliable")
            self.channel.on("message", self._on_data)
            await peer.setLocalDescription(await peer.createOffer())
            request = rtc.JoinRequest(
                publisher_offer=rtc.SessionDescription(
                    type="offer", sdp=peer.localDescription.sdp, id=1
                )
            )
            wrapped = rtc.WrappedJoinRequest(
                compression=rtc.WrappedJoinRequest.GZIP,
                join_request=gzip.compress(request.SerializeToString()),
            )
            params["join_request"] = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()
            path = "/rtc/v1"
        else:
            params |= {"auto_subscribe": "1", "sdk": "js", "protocol": "17"}
            path = "/rtc"
        self.ws = await connect(f"{self.server_url}{path}?{urlencode(params)}", max_size=None)
        self._tasks.append(asyncio.ensure_future(self._receive()))

    async def _receive(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                response = rtc.SignalResponse()
                response.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
                await self._handle(response)
        self.left.set()

    async def _handle(self, response: Any) -> None:
        kind = response.WhichOneof("message")
        if kind == "join":
            self.heard.join = response.join
            if not self.single_pc:
                await self._send(add_track=self._add_track_request())
        elif kind == "offer":  # v0: the subscriber connection
            with gather_only_on(("127.0.0.1",)):
                peer = self.subscriber = self._peer()
                await peer.setRemoteDescription(
                    RTCSessionDescription(sdp=response.offer.sdp, type="offer")
                )
                await peer.setLocalDescription(await peer.createAnswer())
            await self._send(
                answer=rtc.SessionDescription(
                    type="answer", sdp=peer.localDescription.sdp, id=response.offer.id
                )
            )
        elif kind == "answer":
            await self.publisher.setRemoteDescription(
                RTCSessionDescription(sdp=response.answer.sdp, type="answer")
            )
            if self.single_pc:
                await self._send(add_track=self._add_track_request())
        elif kind == "track_published":
            self.heard.published.append(response.track_published)
            if not self.single_pc and not hasattr(self, "publisher"):
                await self._publish_v0()
        elif kind == "update":
            for participant in response.update.participants:
                state = participant.attributes.get("lk.agent.state")
                if state:
                    self.heard.agent_states.append(state)
        elif kind == "leave":
            self.heard.leave = response.leave
        elif kind == "pong":
            self.heard.pongs.append(response.pong)

    def _add_track_request(self) -> Any:
        return rtc.AddTrackRequest(
            cid=self.mic.id,
            name="microphone",
            type=models.TrackType.AUDIO,
            source=models.TrackSource.MICROPHONE,
        )

    async def _publish_v0(self) -> None:
        with gather_only_on(("127.0.0.1",)):
            peer = self.publisher = self._peer()
            peer.addTransceiver(self.mic, direction="sendonly")
            await peer.setLocalDescription(await peer.createOffer())
        await self._send(
            offer=rtc.SessionDescription(type="offer", sdp=peer.localDescription.sdp, id=1)
        )

    async def ping(self, timestamp: int) -> None:
        await self._send(ping=timestamp)

    async def trickle_json(self, candidate: dict[str, Any], target: int) -> None:
        await self._send(
            trickle=rtc.TrickleRequest(candidateInit=json.dumps(candidate), target=target)
        )

    async def leave(self) -> None:
        await self._send(
            leave=rtc.LeaveRequest(
                reason=models.DisconnectReason.CLIENT_INITIATED,
                action=rtc.LeaveRequest.Action.DISCONNECT,
            )
        )
        assert self.ws is not None
        await self.ws.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        for peer in self.peers:
            await peer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
