"""What the end-to-end tests share with their fixtures: the bounds, the timings kept for the
run's summary, the running stack, and polling; for the lifecycle tests, a stack whose API
can go down and a browser that can be killed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from oneinbox_asgi.context import CallEvent
from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator
from oneinbox_emulator.demo import DemoConfig, build_demo_app
from oneinbox_emulator.serving import BackgroundServers, Served, _SecondaryServer, bind, url_of
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings

TIMEOUT_MS = 10_000
AGENT_ID = "agt_demo"
INSTRUMENT = (Path(__file__).parent / "instrument.js").read_text()

TIMINGS: list[tuple[str, float, float]] = []
"""(test, click → active ms, click → first agent audio ms), printed at the end of the run."""
LIFECYCLE_TIMINGS: list[str] = []
"""What the lifecycle tests measured (a killed tab → the next call active, ...), printed too."""


@dataclass
class Stack:
    """The demo site and the emulator it calls, both on loopback."""

    site_url: str
    emulator: Emulator
    servers: BackgroundServers

    def use_agent(self, settings: AgentSettings) -> None:
        """Settings for the demo agent in calls created from now on."""
        self.emulator.agents[AGENT_ID] = settings

    def record(self, call_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.emulator.base_url}/v1/calls/{call_id}",
            headers={"authorization": f"Bearer {self.emulator.api_key}"},
        )
        assert response.status_code == 200
        record: dict[str, Any] = response.json()
        return record

    def stop(self, call_id: str) -> None:
        response = httpx.post(
            f"{self.emulator.base_url}/v1/calls/{call_id}/stop",
            headers={"authorization": f"Bearer {self.emulator.api_key}"},
        )
        assert response.status_code == 200


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(0.05)


BUTTON = "oneinbox-call [part=button]"
TRANSCRIPT = "oneinbox-call [part=transcript]"
ERROR = "oneinbox-call [part=error]"
GREETING = "Agent: Hi Ada! This is the OneInbox demo agent. Say something."


def wait_state(page: Any, state: str, timeout: int = TIMEOUT_MS) -> None:
    page.wait_for_function("s => window.OneInbox.state === s", arg=state, timeout=timeout)


def call_id(page: Any) -> str:
    value: str = page.evaluate("() => window.OneInbox.callId")
    assert value.startswith("call_")
    return value


def wait_agent_audio(page: Any) -> None:
    """The agent's audio is playing in the page: RTP bytes in, and a level above zero."""
    page.wait_for_function("() => window.__inboundAudio().then(a => a.bytes > 0 && a.level > 0)")


def start_by_click(page: Any) -> None:
    page.evaluate("() => { window.__arm(); }")
    page.click(BUTTON)
    wait_state(page, "active")


# -- the call lifecycle (issue 11): a stack whose OneInbox API can go down, and a tab that dies


class ApiServing:
    """The emulator's HTTP API served on its own port, on the servers' loop, so that it can
    stop and start again on the same port while the emulator (its calls, its voice server
    on another port) lives on: OneInbox's API down, LiveKit up."""

    def __init__(self, emulator: Emulator, servers: BackgroundServers, sock: socket.socket):
        self.emulator = emulator
        self.servers = servers
        self.port: int = sock.getsockname()[1]
        self._sock: socket.socket | None = sock
        self._server: uvicorn.Server | None = None
        self._serving: concurrent.futures.Future[None] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert self._serving is None
        sock = self._sock or bind(port=self.port)
        self._sock = None
        # No lifespan here: the voice port's server owns the emulator's startup and shutdown.
        served = Served(self.emulator, sock, lifespan="off")
        server = self._server = _SecondaryServer(served.config())
        assert self.servers.loop is not None
        serving = self._serving = asyncio.run_coroutine_threadsafe(
            server.serve(sockets=[sock]), self.servers.loop
        )
        wait_until(lambda: server.started or serving.done(), timeout)
        assert server.started, "the emulator's API did not start"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop answering: connections to the port are refused until ``start``."""
        assert self._server is not None and self._serving is not None
        self._server.should_exit = True
        self._serving.result(timeout)
        self._server = self._serving = None


@dataclass
class LifecycleStack:
    """The demo site (with ``webhooks`` as given) counting ``on_call_ended`` events, and the
    emulator with its API and voice server on two ports."""

    site_url: str
    emulator: Emulator
    api: ApiServing
    ends: list[CallEvent]

    def ends_of(self, call_id: str) -> list[CallEvent]:
        return [e for e in self.ends if e.call_id == call_id]

    def record(self, call_id: str) -> dict[str, Any]:
        """OneInbox's record of a call, straight from the emulator (the API may be down)."""
        call = self.emulator.registry.get(call_id)
        assert call is not None
        return call.record()


@contextmanager
def lifecycle_stack(*, webhooks: bool) -> Iterator[LifecycleStack]:
    """The demo as ``python -m oneinbox_asgi demo`` runs it (the emulator's default voice
    options, so a caller whose socket drops has 10 s to come back), with webhooks on or
    off at both ends."""
    ends: list[CallEvent] = []
    site_sock, voice_sock, api_sock = bind(), bind(), bind()
    emulator = Emulator(
        agents={AGENT_ID: AgentSettings()},
        voice=VoiceOptions(timings=SessionTimings(connect_timeout=8.0)),
        record_delay=0.0,
        webhook_url=f"{url_of(site_sock)}/oneinbox/webhook" if webhooks else None,
    )
    emulator.bind(url_of(api_sock))
    emulator.api.server_url = url_of(voice_sock, "ws")
    site = build_demo_app(
        DemoConfig(
            api_key=emulator.api_key,
            agent_id=AGENT_ID,
            base_url=emulator.base_url,
            backend="the local OneInbox emulator",
            webhooks=webhooks,
            on_call_ended=ends.append,
        )
    )
    with BackgroundServers([Served(site, site_sock), Served(emulator, voice_sock)]) as servers:
        api = ApiServing(emulator, servers, api_sock)
        api.start()
        try:
            yield LifecycleStack(url_of(site_sock), emulator, api, ends)
        finally:
            if api._serving is not None:
                api.stop()


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid → (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        found[int(entry)] = (ppid, command)
    return found


def process_tree(marker: str) -> list[int]:
    """The browser process whose command line has ``marker`` (a switch Chromium ignores),
    and all its descendants (zygotes, renderers, GPU and network processes)."""
    processes = _processes()
    roots = [p for p, (_, cmd) in processes.items() if marker in cmd and "--type=" not in cmd]
    assert len(roots) == 1, f"browser processes with {marker}: {roots}"
    tree = list(roots)
    for pid in tree:
        tree.extend(p for p, (ppid, _) in processes.items() if ppid == pid)
    return tree


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_tree(pids: list[int], timeout: float = 5.0) -> None:
    """SIGKILL a browser and everything it started (its process group first), and wait
    until none of them runs: a tab that died with its laptop, nothing said to anyone."""
    with suppress(ProcessLookupError):
        if os.getpgid(pids[0]) == pids[0]:
            os.killpg(pids[0], signal.SIGKILL)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(_alive(p) for p in pids), timeout)
