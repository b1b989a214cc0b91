"""The whole emulator as one ASGI app: OneInbox's call API and the voice server, one address.

    emulator = build_emulator()
    uvicorn.run(emulator, host="127.0.0.1", port=7880)   # or: python -m oneinbox_asgi emulator

The API answers on ``http://host:port/v1/...``; the ``server_url`` it hands out is the same
address as ``ws://host:port``, where the voice server answers ``/rtc`` and ``/rtc/v1``.
Call ``bind(base_url)`` once the address is known (the CLI and ``serving`` do).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from starlette.types import Receive, Scope, Send

from .agent import AgentSettings, preload_sounds
from .api import DEFAULT_API_KEY, EmulatorAPI
from .lifecycle import CallLifecycle
from .registry import CallRegistry
from .tokens import DEFAULT_TTL_SECONDS, TokenSigner
from .voice.server import VoiceOptions, VoiceServer
from .webhooks import WebhookOptions, WebhookSender

DEFAULT_AGENT_ID = "agt_demo"
DEFAULT_JOIN_TIMEOUT = 60.0
DEFAULT_RECORD_DELAY = 2.0
DEFAULT_MAX_CALLS_PER_DAY = 1000


class Emulator:
    """A stand-in for api.oneinbox.ai plus its LiveKit voice server, with a demo agent.

    ``join_timeout``: seconds a created call waits for its caller (then it fails with
    ``join_timeout``; None: forever). ``record_delay``: seconds from a call's end to its
    record (transcript, summary, analysis, latency, credits) being written; OneInbox takes
    2-3 s. ``webhook_url`` (or ``webhooks`` for the retry schedule too): where call events
    are POSTed. ``max_calls_per_day``: the account's daily cap (None: none).
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        agents: Mapping[str, AgentSettings] | None = None,
        voice: VoiceOptions | None = None,
        token_ttl: float = DEFAULT_TTL_SECONDS,
        base_url: str = "http://127.0.0.1:7880",
        join_timeout: float | None = DEFAULT_JOIN_TIMEOUT,
        record_delay: float = DEFAULT_RECORD_DELAY,
        webhook_url: str | None = None,
        webhooks: WebhookOptions | None = None,
        max_calls_per_day: int | None = DEFAULT_MAX_CALLS_PER_DAY,
    ) -> None:
        self.api_key = api_key
        self.agents: dict[str, AgentSettings] = dict(
            agents if agents is not None else {DEFAULT_AGENT_ID: AgentSettings()}
        )
        self.registry = CallRegistry(self.agents, deferred_records=True)
        self.signer = TokenSigner("APIemulator", secrets.token_urlsafe(32))
        self.api = EmulatorAPI(
            registry=self.registry,
            api_keys=(api_key,),
            signer=self.signer,
            token_ttl=token_ttl,
            max_calls_per_day=max_calls_per_day,
        )
        self.voice = VoiceServer(
            self.registry, self.signer, agent_settings=self.agents, options=voice
        )
        if webhooks is None and webhook_url:
            webhooks = WebhookOptions(url=webhook_url)
        self.webhooks = WebhookSender(webhooks) if webhooks is not None else None
        self.lifecycle = CallLifecycle(
            self.registry,
            join_timeout=join_timeout,
            record_delay=record_delay,
            webhooks=self.webhooks,
        )
        self.base_url = ""
        self.bind(base_url)

    def bind(self, base_url: str) -> None:
        """Say where the emulator is served; the voice ``server_url`` is the same host and port."""
        parts = urlsplit(base_url.rstrip("/"))
        self.base_url = urlunsplit(parts)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.api.server_url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    @property
    def server_url(self) -> str:
        return self.api.server_url

    @property
    def default_agent_id(self) -> str:
        return next(iter(self.agents), DEFAULT_AGENT_ID)

    def add_agent(self, agent_id: str, settings: AgentSettings | None = None) -> None:
        self.agents[agent_id] = settings or AgentSettings()
        self.registry.agents.add(agent_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif VoiceServer.handles(scope["path"]):
            await self.voice(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.lifecycle.start()
                # Decoding the first sound initialises the codecs (~0.2 s): not on a call's
                # path from connection to first audio.
                await asyncio.to_thread(preload_sounds)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close every room, cancel timers and webhook deliveries (idempotent)."""
        with contextlib.suppress(Exception):
            await self.voice.aclose()
        await self.lifecycle.aclose()


def build_emulator(
    *,
    api_key: str = DEFAULT_API_KEY,
    agents: Mapping[str, AgentSettings] | None = None,
    single_peer_connection: bool = True,
    media_hosts: tuple[str, ...] = ("127.0.0.1",),
    token_ttl: float = DEFAULT_TTL_SECONDS,
    base_url: str = "http://127.0.0.1:7880",
    join_timeout: float | None = DEFAULT_JOIN_TIMEOUT,
    record_delay: float = DEFAULT_RECORD_DELAY,
    webhook_url: str | None = None,
    max_calls_per_day: int | None = DEFAULT_MAX_CALLS_PER_DAY,
) -> Emulator:
    """An ``Emulator`` with the common options spelled out."""
    return Emulator(
        api_key=api_key,
        agents=agents,
        voice=VoiceOptions(media_hosts=media_hosts, single_peer_connection=single_peer_connection),
        token_ttl=token_ttl,
        base_url=base_url,
        join_timeout=join_timeout,
        record_delay=record_delay,
        webhook_url=webhook_url,
        max_calls_per_day=max_calls_per_day,
    )
