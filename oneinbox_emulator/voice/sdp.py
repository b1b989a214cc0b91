"""The SDP and ICE candidate details that livekit-client depends on.

Pure text functions, so they are tested without a peer connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from .loopback import is_loopback

_MSID_LINE = re.compile(r"^a=msid:(\S+) (\S+)$")


def label_streams(sdp: str, owners: Mapping[str, str]) -> str:
    """Rewrite ``a=msid`` lines so the browser can tell whose track each m-line carries.

    livekit-client splits the stream id of a remote track on its first ``|`` into
    ``<participant sid>|<track sid>``; aiortc writes a random stream id instead. ``owners``
    maps a track sid (our tracks' ids are their sids) to the participant sid that owns it.
    Editing the text we send, rather than aiortc's private sender fields, keeps this stable
    across aiortc versions; aiortc never reads the msid back.
    """
    lines = sdp.split("\r\n")
    for index, line in enumerate(lines):
        match = _MSID_LINE.match(line)
        if match and match.group(2) in owners:
            track_sid = match.group(2)
            lines[index] = f"a=msid:{owners[track_sid]}|{track_sid} {track_sid}"
    return "\r\n".join(lines)


def msid_tracks_by_mid(sdp: str) -> dict[str, str]:
    """``mid → msid track id`` for every m-line of ``sdp`` that announces a track."""
    found: dict[str, str] = {}
    mid: str | None = None
    track: str | None = None
    for line in [*sdp.splitlines(), "m=end"]:
        if line.startswith("m="):
            if mid is not None and track is not None:
                found[mid] = track
            mid = track = None
        elif line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:").strip()
        elif match := _MSID_LINE.match(line.strip()):
            track = match.group(2)
    return found


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    candidate: RTCIceCandidate | None
    skipped_because: str = ""


def parse_candidate(candidate_init: str, *, loopback_only: bool) -> RemoteCandidate:
    """Turn a trickled ``RTCIceCandidateInit`` (a JSON string) into an aiortc candidate.

    Candidates aioice cannot use (TCP, mDNS names), and, when the media must stay on
    loopback, every candidate that is not loopback, are skipped: the connection then forms
    through the peer-reflexive candidate the browser's checks reveal.
    """
    try:
        init = json.loads(candidate_init)
        text = str(init.get("candidate") or "")
    except (ValueError, AttributeError):
        return RemoteCandidate(None, "not a JSON candidate")
    if not text:
        return RemoteCandidate(None, "end of candidates")
    try:
        candidate = candidate_from_sdp(text.removeprefix("candidate:"))
    except (AssertionError, ValueError, IndexError):
        return RemoteCandidate(None, "unparsable candidate")
    if candidate.protocol.lower() != "udp":
        return RemoteCandidate(None, "not UDP")
    if candidate.ip.endswith(".local"):
        return RemoteCandidate(None, "mDNS name")
    if loopback_only and not is_loopback(candidate.ip):
        return RemoteCandidate(None, "not loopback")
    candidate.sdpMid = init.get("sdpMid")
    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
    return RemoteCandidate(candidate)
