"""End-to-end: the real demo app and the real emulator, served by uvicorn on loopback, driven
through the real widget in Debian's Chromium.

One browser and one pair of servers for the whole package. Chromium's fake microphone plays
a WAV made here from the emulator's own reply sound: 1.2 s of speech, then 1.3 s of silence,
in a loop, so the demo agent hears utterances and takes turns.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator
from oneinbox_emulator.demo import DemoConfig, build_demo_app
from oneinbox_emulator.serving import BackgroundServers, Served, bind
from oneinbox_emulator.voice.media import SAMPLE_RATE, load_clip
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings

from ..chromium import launched
from .support import AGENT_ID, TIMEOUT_MS, TIMINGS, Stack

INSTRUMENT = (Path(__file__).parent / "instrument.js").read_text()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("end-to-end timings (loopback)")
    for name, active, audio in TIMINGS:
        terminalreporter.write_line(
            f"{name}: click → active {active:.0f} ms, click → first agent audio {audio:.0f} ms"
        )


def _speaking_caller(path: Path) -> Path:
    speech = load_clip("reply.ogg")[: int(1.2 * SAMPLE_RATE)]
    pcm = np.concatenate([speech, np.zeros(int(1.3 * SAMPLE_RATE), np.int16)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="package")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wav = _speaking_caller(tmp_path_factory.mktemp("e2e") / "caller.wav")
    with launched([f"--use-file-for-fake-audio-capture={wav}"]) as browser:
        yield browser


@pytest.fixture(scope="package")
def stack(chromium: Any) -> Iterator[Stack]:
    emulator = Emulator(
        agents={AGENT_ID: AgentSettings()},
        voice=VoiceOptions(departure_timeout=2.0, timings=SessionTimings(connect_timeout=8.0)),
        record_delay=0.0,  # the tests read the transcript as soon as a call ends
    )
    emulator_slot = Served(emulator, bind())
    emulator.bind(emulator_slot.url)
    site = build_demo_app(
        DemoConfig(
            api_key=emulator.api_key,
            agent_id=AGENT_ID,
            base_url=emulator.base_url,
            backend="the local OneInbox emulator",
        )
    )
    site_slot = Served(site, bind())
    with BackgroundServers([site_slot, emulator_slot]) as servers:
        yield Stack(site_slot.url, emulator, servers)


@pytest.fixture
def fresh_stack(stack: Stack) -> Iterator[Stack]:
    stack.emulator.api.behave()
    stack.use_agent(AgentSettings())
    yield stack
    stack.emulator.api.behave()
    stack.use_agent(AgentSettings())


@pytest.fixture
def page(chromium: Any, fresh_stack: Stack) -> Iterator[Any]:
    """A signed-in visitor ("Ada") on the demo's home page, with the widget loaded."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    signed_in = context.request.post(f"{fresh_stack.site_url}/login", form={"name": "Ada"})
    assert signed_in.ok
    page.goto(fresh_stack.site_url + "/")
    page.wait_for_function("() => !!window.OneInbox")
    try:
        yield page
    finally:
        context.close()
