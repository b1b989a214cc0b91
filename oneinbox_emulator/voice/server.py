"""The LiveKit-compatible voice server: an ASGI app answering livekit-client's signalling.

Routes (under whatever path the ``server_url`` has):

* ``/rtc`` (WebSocket): v0 signalling, two peer connections.
* ``/rtc/v1`` (WebSocket): v1 signalling, one peer connection. When single peer connection
  mode is turned off it answers 404, and so does its validate endpoint, which makes a stock
  client retry on ``/rtc``.
* ``/rtc/validate``, ``/rtc/v1/validate`` (GET): the client asks here why a WebSocket upgrade
  failed. 401 carries a readable reason (bad, expired or foreign token); 404 with "requested
  room does not exist" means the call is unknown or over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope, Send

from ..agent import AgentSettings
from ..registry import Call, CallRegistry
from ..tokens import Grant, TokenError, TokenSigner
from . import protocol
from .media import CallerAudio
from .room import VoiceRoom
from .session import JoinParams, SessionTimings, SignalSession

log = logging.getLogger("oneinbox_emulator.voice")

ROOM_GONE = "requested room does not exist"


@dataclass(frozen=True, slots=True)
class VoiceOptions:
    media_hosts: tuple[str, ...] = ("127.0.0.1",)
    """Addresses the server gathers ICE candidates on. All loopback (the default) also means
    remote candidates that are not loopback are ignored."""
    single_peer_connection: bool = True
    """Serve ``/rtc/v1``. Off: answer it 404, so clients fall back to ``/rtc`` (v0)."""
    departure_timeout: float = 10.0
    """A caller whose socket dropped without a leave has this long to re-join."""
    timings: SessionTimings = field(default_factory=SessionTimings)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Admission:
    grant: Grant
    call: Call
    params: JoinParams


class AsgiSignalSocket:
    """An accepted ASGI WebSocket as a ``SignalSocket``; ``close()`` also wakes ``receive()``."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._closed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        if self._closed.is_set():
            return
        try:
            await self._send({"type": "websocket.send", "bytes": data})
        except Exception:  # the client went away; receive() will report it
            self._closed.set()

    async def receive(self) -> bytes | str | None:
        if self._closed.is_set():
            return None
        incoming = asyncio.ensure_future(self._receive())
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({incoming, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (incoming, closing):
                waiter.cancel()
        if not incoming.done() or incoming.cancelled():
            return None
        message: Message = incoming.result()
        if message["type"] == "websocket.disconnect":
            self._closed.set()
            return None
        data: bytes | str | None = message.get("bytes")
        return data if data is not None else message.get("text")

    async def close(self, code: int = 1000) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code})


SettingsLookup = Callable[[Call], AgentSettings]


class VoiceServer:
    def __init__(
        self,
        registry: CallRegistry,
        signer: TokenSigner,
        *,
        agent_settings: SettingsLookup | Mapping[str, AgentSettings] | None = None,
        options: VoiceOptions | None = None,
    ) -> None:
        self.registry = registry
        self.signer = signer
        self.options = options or VoiceOptions()
        if agent_settings is None or isinstance(agent_settings, Mapping):
            table = agent_settings if agent_settings is not None else {}
            self._settings_for: SettingsLookup = lambda call: table.get(
                call.agent_id, AgentSettings()
            )
        else:
            self._settings_for = agent_settings
        self.rooms: dict[str, VoiceRoom] = {}
        self.caller_audio: dict[str, CallerAudio] = {}
        """What each call's caller sent, by call id (kept after the call ends, for tests)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        registry.on_end(self._call_ended)

    # -- routing ------------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        path = path.rstrip("/")
        return path.endswith(("/rtc", "/rtc/v1", "/rtc/validate", "/rtc/v1/validate"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._loop = asyncio.get_running_loop()
        path = scope["path"].rstrip("/")
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        v1 = path.endswith(("/rtc/v1", "/rtc/v1/validate"))
        if scope["type"] == "websocket" and not path.endswith("/validate"):
            await self._signal(scope, receive, send, self._admit(query, v1=v1))
        elif scope["type"] == "http" and path.endswith("/validate"):
            await self._validate(scope, send, self._admit(query, v1=v1))
        elif scope["type"] == "http":
            await _plain(send, 404, "not found", scope.get("method") == "HEAD")
        else:
            await send({"type": "websocket.close", "code": 1008})

    def _admit(self, query: Mapping[str, str], *, v1: bool) -> Admission | Refusal:
        if v1 and not self.options.single_peer_connection:
            return Refusal(404, "single peer connection signalling (/rtc/v1) is turned off")
        token = query.get("access_token")
        if not token:
            return Refusal(401, "no access token in the request")
        try:
            grant = self.signer.verify(token)
        except TokenError as exc:
            return Refusal(401, str(exc))
        call = self.registry.by_room(grant.room)
        if call is None:
            return Refusal(404, ROOM_GONE)
        if call.status in ("completed", "failed"):
            return Refusal(404, f"{ROOM_GONE}: the call has ended")
        params = JoinParams(single_peer_connection=v1)
        if v1 and "join_request" in query:
            try:
                join = protocol.decode_join_request(query["join_request"])
            except protocol.ProtocolError as exc:
                return Refusal(400, str(exc))
            if join.HasField("publisher_offer"):
                offer = join.publisher_offer
                params = JoinParams(
                    single_peer_connection=True, publisher_offer=(offer.sdp, offer.id)
                )
        return Admission(grant, call, params)

    async def _validate(self, scope: Scope, send: Send, admission: Admission | Refusal) -> None:
        if isinstance(admission, Refusal):
            await _plain(send, admission.status, admission.reason, scope["method"] == "HEAD")
        else:
            await _plain(send, 200, "success", scope["method"] == "HEAD")

    async def _signal(
        self, scope: Scope, receive: Receive, send: Send, admission: Admission | Refusal
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if isinstance(admission, Refusal):
            # Refused before the upgrade (uvicorn answers 403). livekit-client then asks the
            # validate endpoint, which gives the real status and the reason. (A denial response
            # with the status itself works too, but uvicorn logs each one as an error.)
            log.info("refused a join: %s %s", admission.status, admission.reason)
            await send({"type": "websocket.close", "code": 1008})
            return
        room = self._room_for(admission.call)
        await send({"type": "websocket.accept"})
        session = SignalSession(
            AsgiSignalSocket(receive, send),
            room,
            admission.grant,
            admission.params,
            media_hosts=self.options.media_hosts,
            timings=self.options.timings,
        )
        await room.admit(session)
        await session.run()

    # -- rooms --------------------------------------------------------------------------------

    def _room_for(self, call: Call) -> VoiceRoom:
        room = self.rooms.get(call.room_name)
        if room is None:
            room = VoiceRoom(
                call,
                self.registry,
                self._settings_for(call),
                departure_timeout=self.options.departure_timeout,
            )
            self.rooms[call.room_name] = room
            self.caller_audio[call.id] = room.caller_audio
        return room

    def _call_ended(self, call: Call) -> None:
        """Registry listener: however a call ended, its room closes (on the server's loop)."""
        room = self.rooms.pop(call.room_name, None)
        if room is None or self._loop is None or self._loop.is_closed():
            return
        reason = call.end_reason or "api_stop"
        self._loop.call_soon_threadsafe(self._close_room, room, reason)

    def _close_room(self, room: VoiceRoom, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(room.close(reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Server shutdown: close every room (callers are told SERVER_SHUTDOWN)."""
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(r.close("server_shutdown") for r in rooms), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def settle(self) -> None:
        """Wait until rooms being closed are fully closed (tests use this before asserting)."""
        await asyncio.gather(*self._closing, return_exceptions=True)


def _cors_headers() -> list[tuple[bytes, bytes]]:
    # The client fetches the validate endpoint from the page's origin, which is not ours:
    # without this header the browser hides the status and the client reports
    # "server unreachable" instead of the reason.
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"access-control-allow-origin", b"*"),
        (b"cache-control", b"no-store"),
    ]


async def _plain(send: Send, status: int, text: str, head: bool = False) -> None:
    body = text.encode()
    headers = [*_cors_headers(), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
