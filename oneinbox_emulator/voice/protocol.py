"""LiveKit signalling and data messages: decoding what the client sends, building what it needs.

Only protobuf plumbing lives here (``livekit-protocol``'s generated classes); the order in
which things are sent is the session's business.
"""

from __future__ import annotations

import base64
import gzip
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from livekit.protocol import models, rtc

SERVER_VERSION = "1.9.0"  # not 0.15.1: that version makes the client disable dynacast
SERVER_PROTOCOL = 16
PING_INTERVAL_SECONDS = 5
PING_TIMEOUT_SECONDS = 15
TRANSCRIPTION_TOPIC = "lk.transcription"
AGENT_STATE_ATTRIBUTE = "lk.agent.state"

DisconnectReason = models.DisconnectReason


class ProtocolError(ValueError):
    """A request the server cannot make sense of; the message says why."""


def new_sid(prefix: str) -> str:
    """LiveKit-style ids: ``PA_`` participants, ``TR_`` tracks, ``RM_`` rooms."""
    return f"{prefix}_{secrets.token_urlsafe(9).replace('-', 'x').replace('_', 'y')}"


def decode_join_request(encoded: str) -> Any:
    """The v1 ``join_request`` query parameter → ``JoinRequest``.

    base64url (padding kept) of a ``WrappedJoinRequest`` whose payload may be gzipped.
    """
    try:
        wrapped = rtc.WrappedJoinRequest()
        wrapped.ParseFromString(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        payload = wrapped.join_request
        if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
            payload = gzip.decompress(payload)
        request = rtc.JoinRequest()
        request.ParseFromString(payload)
    except Exception as exc:  # protobuf, base64 and gzip each raise their own types
        raise ProtocolError(f"join_request is not a valid WrappedJoinRequest: {exc}") from exc
    return request


def parse_signal_request(data: bytes | str) -> Any:
    """One WebSocket message → ``SignalRequest`` (binary protobuf, or the client's JSON mode)."""
    request = rtc.SignalRequest()
    try:
        if isinstance(data, str):
            from google.protobuf import json_format

            json_format.Parse(data, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(data)
    except Exception as exc:
        raise ProtocolError(f"not a SignalRequest: {exc}") from exc
    return request


@dataclass(frozen=True, slots=True)
class TrackSpec:
    sid: str
    name: str
    muted: bool = False
    source: models.TrackSource = models.TrackSource.MICROPHONE


def track_info(track: TrackSpec) -> Any:
    return models.TrackInfo(
        sid=track.sid,
        type=models.TrackType.AUDIO,
        name=track.name,
        muted=track.muted,
        source=track.source,
        mime_type="audio/opus",
    )


def participant_info(
    *,
    sid: str,
    identity: str,
    name: str,
    joined_at: float,
    kind: models.ParticipantInfo.Kind = models.ParticipantInfo.Kind.STANDARD,
    tracks: tuple[TrackSpec, ...] = (),
    attributes: Mapping[str, str] | None = None,
    version: int = 1,
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_publish_data: bool = True,
) -> Any:
    return models.ParticipantInfo(
        sid=sid,
        identity=identity,
        name=name,
        state=models.ParticipantInfo.State.ACTIVE,
        joined_at=int(joined_at),
        joined_at_ms=int(joined_at * 1000),
        kind=kind,
        version=version,
        is_publisher=bool(tracks),
        tracks=[track_info(t) for t in tracks],
        attributes=dict(attributes or {}),
        # Without a permission object the client refuses every publish ("insufficient
        # permissions"); an empty can_publish_sources means "any source".
        permission=models.ParticipantPermission(
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            can_publish_data=can_publish_data,
        ),
    )


def join_response(
    *,
    room_sid: str,
    room_name: str,
    room_created_at: float,
    participant: Any,
    others: list[Any],
    subscriber_primary: bool,
) -> bytes:
    response = rtc.SignalResponse(
        join=rtc.JoinResponse(
            room=models.Room(
                sid=room_sid,
                name=room_name,
                creation_time=int(room_created_at),
                creation_time_ms=int(room_created_at * 1000),
                num_participants=1 + len(others),
                num_publishers=sum(1 for p in others if p.tracks),
                active_recording=False,
            ),
            participant=participant,
            other_participants=others,
            server_version=SERVER_VERSION,
            server_info=models.ServerInfo(
                edition=models.ServerInfo.Edition.Standard,
                version=SERVER_VERSION,
                protocol=SERVER_PROTOCOL,
                region="local",
                node_id="oneinbox-emulator",
            ),
            server_region="local",
            subscriber_primary=subscriber_primary,
            ping_interval=PING_INTERVAL_SECONDS,
            ping_timeout=PING_TIMEOUT_SECONDS,
            # Resume (ReconnectResponse, sync_state) is not implemented: ask for full re-joins.
            client_configuration=models.ClientConfiguration(
                resume_connection=models.ClientConfigSetting.DISABLED
            ),
        )
    )
    return bytes(response.SerializeToString())


def session_description(kind: str, sdp: str, sdp_id: int, mid_to_track: Mapping[str, str]) -> Any:
    return rtc.SessionDescription(type=kind, sdp=sdp, id=sdp_id, mid_to_track_id=dict(mid_to_track))


def answer(sdp: str, sdp_id: int, mid_to_track: Mapping[str, str]) -> bytes:
    message = rtc.SignalResponse(answer=session_description("answer", sdp, sdp_id, mid_to_track))
    return bytes(message.SerializeToString())


def offer(sdp: str, sdp_id: int) -> bytes:
    message = rtc.SignalResponse(offer=session_description("offer", sdp, sdp_id, {}))
    return bytes(message.SerializeToString())


def track_published(cid: str, track: TrackSpec) -> bytes:
    message = rtc.SignalResponse(
        track_published=rtc.TrackPublishedResponse(cid=cid, track=track_info(track))
    )
    return bytes(message.SerializeToString())


def participant_update(participants: list[Any]) -> bytes:
    message = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=participants))
    return bytes(message.SerializeToString())


def pong(timestamp: int) -> bytes:
    return bytes(rtc.SignalResponse(pong=timestamp).SerializeToString())


def pong_resp(last_ping_timestamp: int) -> bytes:
    message = rtc.SignalResponse(
        pong_resp=rtc.Pong(
            last_ping_timestamp=last_ping_timestamp, timestamp=int(time.time() * 1000)
        )
    )
    return bytes(message.SerializeToString())


def leave(reason: models.DisconnectReason) -> bytes:
    message = rtc.SignalResponse(
        leave=rtc.LeaveRequest(
            can_reconnect=False, reason=reason, action=rtc.LeaveRequest.Action.DISCONNECT
        )
    )
    return bytes(message.SerializeToString())


# -- data packets (one serialized DataPacket per SCTP message, no framing) --------------------


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who a transcript line belongs to: the participant and the audio track it transcribes."""

    identity: str
    sid: str
    track_sid: str


def transcription_packet(
    sender: Speaker, subject: Speaker, segment_id: str, text: str, start_ms: int, end_ms: int
) -> bytes:
    """The legacy ``Transcription`` packet (``RoomEvent.TranscriptionReceived``)."""
    packet = models.DataPacket(
        kind=models.DataPacket.Kind.RELIABLE,
        participant_identity=sender.identity,
        transcription=models.Transcription(
            transcribed_participant_identity=subject.identity,
            track_id=subject.track_sid,
            segments=[
                models.TranscriptionSegment(
                    id=segment_id,
                    text=text,
                    start_time=start_ms,
                    end_time=end_ms,
                    final=True,
                    language="en",
                )
            ],
        ),
    )
    return bytes(packet.SerializeToString())


def text_stream_packets(
    subject: Speaker, segment_id: str, text: str, *, chunk_size: int = 15_000
) -> list[bytes]:
    """A finished ``lk.transcription`` text stream: header, chunk(s), trailer.

    The packet's ``participant_identity`` is the transcribed participant, as LiveKit agents
    send it, so a client attributes user lines to the user and agent lines to the agent.
    """
    stream_id = str(uuid.uuid4())
    content = text.encode()
    attributes = {
        "lk.transcription_final": "true",
        "lk.segment_id": segment_id,
        "lk.transcribed_track_id": subject.track_sid,
    }
    header = models.DataPacket(
        kind=models.DataPacket.Kind.RELIABLE,
        participant_identity=subject.identity,
        stream_header=models.DataStream.Header(
            stream_id=stream_id,
            timestamp=int(time.time() * 1000),
            topic=TRANSCRIPTION_TOPIC,
            mime_type="text/plain",
            total_length=len(content),
            attributes=attributes,
            text_header=models.DataStream.TextHeader(
                operation_type=models.DataStream.OperationType.CREATE
            ),
        ),
    )
    packets = [bytes(header.SerializeToString())]
    chunks = [content[i : i + chunk_size] for i in range(0, len(content), chunk_size)] or [b""]
    for index, chunk in enumerate(chunks):
        packet = models.DataPacket(
            kind=models.DataPacket.Kind.RELIABLE,
            participant_identity=subject.identity,
            stream_chunk=models.DataStream.Chunk(
                stream_id=stream_id, chunk_index=index, content=chunk
            ),
        )
        packets.append(bytes(packet.SerializeToString()))
    trailer = models.DataPacket(
        kind=models.DataPacket.Kind.RELIABLE,
        participant_identity=subject.identity,
        stream_trailer=models.DataStream.Trailer(stream_id=stream_id, reason=""),
    )
    packets.append(bytes(trailer.SerializeToString()))
    return packets
