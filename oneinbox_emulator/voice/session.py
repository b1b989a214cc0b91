"""One participant's signalling connection: the WebSocket and the peer connections behind it.

Two modes, chosen by the URL the client opened:

* v1, ``/rtc/v1`` (livekit-client's default): a single peer connection. The client's first
  offer arrives inside the join request; the agent's track is attached in the answer, and
  the agent's data goes over the data channels the client created.
* v0, ``/rtc``: two peer connections. The server offers a *subscriber* connection carrying
  the agent's track and its own data channels; the client offers a *publisher* connection
  for its microphone. The subscriber is primary: its connection completes ``connect()``.

Client requests are handled strictly one after another (an offer's answer must be set
before the trickles that follow it are applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from livekit.protocol import models, rtc

from ..tokens import Grant
from . import protocol
from .loopback import gather_only_on, is_loopback
from .media import AgentAudioTrack
from .sdp import label_streams, msid_tracks_by_mid, parse_candidate

log = logging.getLogger("oneinbox_emulator.voice")

PUBLISHER = rtc.SignalTarget.PUBLISHER
SUBSCRIBER = rtc.SignalTarget.SUBSCRIBER


class SignalSocket(Protocol):
    """The WebSocket, as the session needs it."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | str | None:
        """The next message, or None once the socket is closed (by either side)."""

    async def close(self, code: int = 1000) -> None: ...


class SessionRoom(Protocol):
    """The room a session belongs to, as the session sees it (``room.VoiceRoom`` is one).

    Declared here rather than importing the room: the room drives its sessions, so the
    session module must not depend on the room module, not even for types.
    """

    @property
    def sid(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def created_at(self) -> float: ...

    def agent_info(self) -> Any:
        """The agent's ``ParticipantInfo``, for the join response."""

    def track_owners(self) -> dict[str, str]:
        """Track sid → participant sid, for the msid labels in our SDP."""

    def new_agent_track(self) -> AgentAudioTrack: ...

    def session_connected(self, session: SignalSession) -> None:
        """The session's primary peer connection is up: the caller is in the call."""

    def caller_track(self, session: SignalSession, track: Any) -> None:
        """The caller's microphone arrived."""

    def session_gone(self, session: SignalSession) -> None:
        """The session ended (left, dropped, or sent away)."""


@dataclass(frozen=True, slots=True)
class JoinParams:
    single_peer_connection: bool
    publisher_offer: tuple[str, int] | None = None
    """v1: the ``(sdp, id)`` of the offer bundled in the join request, if the client sent one."""


@dataclass(frozen=True, slots=True)
class SessionTimings:
    connect_timeout: float = 10.0
    """A session whose media never connects is sent away after this many seconds."""
    leave_grace: float = 0.2
    """After sending ``leave``, how long the client gets to close its side first."""
    idle_timeout: float = protocol.PING_TIMEOUT_SECONDS
    """The client pings every few seconds; this much silence means the socket is gone."""


class SignalSession:
    def __init__(
        self,
        socket: SignalSocket,
        room: SessionRoom,
        grant: Grant,
        params: JoinParams,
        *,
        media_hosts: tuple[str, ...],
        timings: SessionTimings,
    ) -> None:
        self.socket = socket
        self.room = room
        self.grant = grant
        self.params = params
        self.sid = protocol.new_sid("PA")
        self.identity = grant.identity
        self.joined_at = time.time()
        self.media_hosts = media_hosts
        self.timings = timings
        self.microphones: dict[str, protocol.TrackSpec] = {}  # by the client's track id (cid)
        self.left_by_request = False
        self.connected = asyncio.Event()

        self._loopback_only = all(is_loopback(h) for h in media_hosts)
        self._peers: list[RTCPeerConnection] = []
        self.publisher = self._new_peer(primary=params.single_peer_connection)
        self.subscriber: RTCPeerConnection | None = None
        self._agent_track: AgentAudioTrack | None = None
        self._early_candidates: dict[RTCPeerConnection, list[Any]] = {}
        self._data_channel: RTCDataChannel | None = None
        self._unsent_data: list[bytes] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._closed = asyncio.Event()

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Join, negotiate, then serve requests until the client leaves or the room ends."""
        try:
            with gather_only_on(self.media_hosts):
                await self._send(self._join_response())
                self._spawn(self._watch_connection())
                if not self.params.single_peer_connection:
                    await self._offer_subscriber()
                elif self.params.publisher_offer is not None:
                    await self._answer(*self.params.publisher_offer)
                await self._serve()
        except Exception:
            log.exception("signalling session %s failed", self.sid)
        finally:
            # The room hears of it first: closing peer connections takes a while, and a
            # caller who left must end the call before anything else (a stop) can.
            self.room.session_gone(self)
            await self.close()

    async def leave(self, reason: models.DisconnectReason) -> None:
        """Tell the client to disconnect (no reconnect), give it a moment, then close."""
        if self._closing:
            return
        with contextlib.suppress(Exception):
            await self._send(protocol.leave(reason))
        # The client closes its peer connections and socket when it reads the leave.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timings.leave_grace):
                await self._closed.wait()
        await self.close()

    async def close(self) -> None:
        """Close every peer connection, the socket and the session's tasks (idempotent)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for peer in self._peers:
            with contextlib.suppress(Exception):
                await peer.close()
        with contextlib.suppress(Exception):
            await self.socket.close()
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def peer_connections(self) -> tuple[RTCPeerConnection, ...]:
        return tuple(self._peers)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch_connection(self) -> None:
        try:
            async with asyncio.timeout(self.timings.connect_timeout):
                await self.connected.wait()
        except TimeoutError:
            log.warning("session %s: media did not connect in time", self.sid)
            await self.leave(protocol.DisconnectReason.JOIN_FAILURE)

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.socket.send(data)

    def send_signal(self, data: bytes) -> None:
        """Queue a server-initiated signal message (e.g. a participant update)."""
        if not self._closing:
            self._spawn(self._send(data))

    def send_data(self, packet: bytes) -> None:
        """One DataPacket on the reliable channel; held back until the channel opens."""
        channel = self._data_channel
        if channel is not None and channel.readyState == "open":
            channel.send(packet)
        else:
            self._unsent_data.append(packet)

    def _use_data_channel(self, channel: RTCDataChannel) -> None:
        self._data_channel = channel

        def flush() -> None:
            pending, self._unsent_data = self._unsent_data, []
            for packet in pending:
                channel.send(packet)

        if channel.readyState == "open":
            flush()
        else:
            channel.on("open", flush)

    # -- peer connections --------------------------------------------------------------------

    def _new_peer(self, *, primary: bool, bundle: bool = False) -> RTCPeerConnection:
        # No ICE servers: aiortc would otherwise contact a public STUN server.
        config = RTCConfiguration(iceServers=[])
        if bundle:
            config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        peer = RTCPeerConnection(configuration=config)
        self._peers.append(peer)

        @peer.on("connectionstatechange")
        def on_state() -> None:
            state = peer.connectionState
            log.debug("session %s peer %s: %s", self.sid, id(peer), state)
            if primary and state == "connected" and not self.connected.is_set():
                self.connected.set()
                self.room.session_connected(self)
            elif state == "failed" and not self._closing:
                self._spawn(self.leave(protocol.DisconnectReason.MEDIA_FAILURE))

        @peer.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self.room.caller_track(self, track)

        @peer.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            # v1: the agent talks on the channels the client created. Client → server data
            # (chat, RPC) is not routed anywhere: the agent has no use for it.
            if self.params.single_peer_connection and channel.label == "_reliable":
                self._use_data_channel(channel)

        return peer

    def _new_agent_track(self) -> AgentAudioTrack:
        track = self.room.new_agent_track()
        self._agent_track = track
        return track

    async def _offer_subscriber(self) -> None:
        """v0: offer the subscriber connection: the agent's audio and the server's channels."""
        peer = self.subscriber = self._new_peer(primary=True, bundle=True)
        # sendonly: addTrack would offer sendrecv, and the subscriber carries nothing back.
        peer.addTransceiver(self._new_agent_track(), direction="sendonly")
        reliable = peer.createDataChannel("_reliable", ordered=True)
        peer.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
        self._use_data_channel(reliable)
        await peer.setLocalDescription(await peer.createOffer())
        sdp = label_streams(peer.localDescription.sdp, self.room.track_owners())
        await self._send(protocol.offer(sdp, 1))

    async def _answer(self, sdp: str, sdp_id: int) -> None:
        """Answer an offer for the publisher connection (v1: the only connection)."""
        peer = self.publisher
        await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if self.params.single_peer_connection and self._agent_track is None:
            # After setRemoteDescription, aiortc puts the track on the first recvonly audio
            # m-line the client offered (mid 0), which then becomes sendonly.
            peer.addTrack(self._new_agent_track())
        await peer.setLocalDescription(await peer.createAnswer())
        await self._apply_early_candidates(peer)
        answer_sdp = label_streams(peer.localDescription.sdp, self.room.track_owners())
        await self._send(protocol.answer(answer_sdp, sdp_id, self._mid_to_track(peer, sdp)))

    def _mid_to_track(self, peer: RTCPeerConnection, offer_sdp: str) -> dict[str, str]:
        """The complete mid → track sid map: the client replaces its map with every answer."""
        mapping: dict[str, str] = {}
        for transceiver in peer.getTransceivers():
            track = transceiver.sender.track
            if transceiver.mid is not None and isinstance(track, AgentAudioTrack):
                mapping[transceiver.mid] = track.id
        for mid, client_track_id in msid_tracks_by_mid(offer_sdp).items():
            if client_track_id in self.microphones:
                mapping[mid] = self.microphones[client_track_id].sid
        return mapping

    async def _add_candidate(self, peer: RTCPeerConnection, candidate_init: str) -> None:
        parsed = parse_candidate(candidate_init, loopback_only=self._loopback_only)
        if parsed.candidate is None:
            log.debug("session %s: skipped candidate (%s)", self.sid, parsed.skipped_because)
            return
        if peer.remoteDescription is None:
            self._early_candidates.setdefault(peer, []).append(parsed.candidate)
            return
        await peer.addIceCandidate(parsed.candidate)

    async def _apply_early_candidates(self, peer: RTCPeerConnection) -> None:
        for candidate in self._early_candidates.pop(peer, []):
            await peer.addIceCandidate(candidate)

    # -- requests ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self.timings.idle_timeout):
                    message = await self.socket.receive()
            except TimeoutError:
                log.info(
                    "session %s: no message in %ss, dropping", self.sid, self.timings.idle_timeout
                )
                return
            if message is None:
                return
            try:
                request = protocol.parse_signal_request(message)
            except protocol.ProtocolError as exc:
                log.warning("session %s: %s", self.sid, exc)
                continue
            if not await self._handle(request):
                return

    async def _handle(self, request: Any) -> bool:
        """Apply one request; False when the session should end."""
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self._answer(request.offer.sdp, request.offer.id)
        elif kind == "answer":
            if self.subscriber is not None:
                description = RTCSessionDescription(sdp=request.answer.sdp, type="answer")
                await self.subscriber.setRemoteDescription(description)
                await self._apply_early_candidates(self.subscriber)
        elif kind == "trickle":
            peer = self.publisher
            if request.trickle.target == SUBSCRIBER and self.subscriber is not None:
                peer = self.subscriber
            await self._add_candidate(peer, request.trickle.candidateInit)
        elif kind == "add_track":
            self._publish(request.add_track)
        elif kind == "mute":
            self._mute(request.mute.sid, request.mute.muted)
        elif kind == "ping":
            await self._send(protocol.pong(request.ping))
        elif kind == "ping_req":
            await self._send(protocol.pong_resp(request.ping_req.timestamp))
        elif kind == "leave":
            self.left_by_request = True
            return False
        else:
            # subscription_permission, subscription, track_setting, update_metadata, ...:
            # nothing in a one-caller, one-agent room depends on them.
            log.debug("session %s: ignoring %s", self.sid, kind)
        return True

    def _publish(self, request: Any) -> None:
        track = protocol.TrackSpec(
            sid=protocol.new_sid("TR"),
            name=request.name or "microphone",
            muted=request.muted,
            source=request.source,
        )
        self.microphones[request.cid] = track
        self.send_signal(protocol.track_published(request.cid, track))

    def _mute(self, track_sid: str, muted: bool) -> None:
        for cid, track in self.microphones.items():
            if track.sid == track_sid:
                self.microphones[cid] = dataclasses.replace(track, muted=muted)

    # -- what the client learns about itself and the room ------------------------------------

    @property
    def microphone_sid(self) -> str:
        first = next(iter(self.microphones.values()), None)
        return first.sid if first is not None else ""

    def _join_response(self) -> bytes:
        me = protocol.participant_info(
            sid=self.sid,
            identity=self.identity,
            name=self.grant.name,
            joined_at=self.joined_at,
            can_publish=self.grant.can_publish,
            can_subscribe=self.grant.can_subscribe,
            can_publish_data=self.grant.can_publish_data,
        )
        return protocol.join_response(
            room_sid=self.room.sid,
            room_name=self.room.name,
            room_created_at=self.room.created_at,
            participant=me,
            others=[self.room.agent_info()],
            subscriber_primary=not self.params.single_peer_connection,
        )
