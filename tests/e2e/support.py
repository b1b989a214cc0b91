"""What the end-to-end tests share with their fixtures: the bounds, the timings kept for the
run's summary, the running stack, and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator
from oneinbox_emulator.serving import BackgroundServers

TIMEOUT_MS = 10_000
AGENT_ID = "agt_demo"

TIMINGS: list[tuple[str, float, float]] = []
"""(test, click → active ms, click → first agent audio ms), printed at the end of the run."""


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


def start_by_click(page: Any) -> None:
    page.evaluate("() => { window.__arm(); }")
    page.click(BUTTON)
    wait_state(page, "active")
