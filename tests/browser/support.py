"""What the widget's browser tests share with their fixtures: the bounds, the host app's
settings, the recorder of page events, the running site, and the page helpers."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_MS = 10_000  # every wait in these tests is bounded by this
CSP = "script-src 'self' 'nonce-{nonce}'; style-src 'self'"
API_KEY = "oi_sk_browser_tests_0123456789abcdef"
RATE_LIMIT = "3/minute"  # per caller; every login is a new caller
FORBIDDEN_MESSAGE = "Voice calls are not part of your plan."

# Recorded before any page script runs; init scripts are not subject to the page's CSP.
RECORDER = """
(() => {
  const log = (window.__oneinbox = { events: [], violations: [], elementEvents: [] });
  for (const type of ["state", "transcript", "error", "ended", "mute", "ready"]) {
    document.addEventListener("oneinbox:" + type, (e) => {
      const d = e.detail;
      const copy = type === "ready" ? null : JSON.parse(JSON.stringify(d ?? null));
      log.events.push({ type, detail: copy, t: performance.now() });
    });
  }
  document.addEventListener("securitypolicyviolation", (e) => {
    log.violations.push({ directive: e.violatedDirective, blocked: e.blockedURI });
  });
})();
"""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Site:
    """The running host app, and the knobs tests turn."""

    url: str
    fake: Any  # oneinbox_emulator.api.EmulatorAPI
    pages: dict[str, tuple[str, bool]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def page(self, body: Callable[[str], str], *, csp: bool = True) -> str:
        """Registers a page; ``body(nonce)`` renders its HTML. Returns its absolute URL."""
        name = secrets.token_hex(6)
        self.pages[name] = (body, csp)  # type: ignore[assignment]
        return f"{self.url}/page/{name}"

    def posted(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == f"/oneinbox/{route}"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def login(page: Any, site: Site, name: str = "Ada") -> None:
    response = page.request.get(f"{site.url}/login?id=u-{secrets.token_hex(3)}&name={name}")
    assert response.ok


def events(page: Any, type_: str | None = None) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = page.evaluate("window.__oneinbox.events")
    return [e for e in recorded if type_ is None or e["type"] == type_]


def states(page: Any) -> list[str]:
    return [e["detail"]["state"] for e in events(page, "state")]


def violations(page: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__oneinbox.violations")
    return found


def wait_state(page: Any, state: str) -> None:
    page.wait_for_function(
        "s => window.OneInbox && window.OneInbox.state === s", arg=state, timeout=TIMEOUT_MS
    )


def mic_state(page: Any) -> str | None:
    value: str | None = page.evaluate(
        "() => { const m = window.OneInbox._debug.mic; return m ? m.readyState : null; }"
    )
    return value


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT_MS / 1000) -> None:
    """Polls a condition on the Python side (e.g. the server's request log), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(0.02)


def wait_mic_released(page: Any) -> None:
    page.wait_for_function(
        "() => { const m = window.OneInbox._debug.mic; return !!m && m.readyState === 'ended'; }",
        timeout=TIMEOUT_MS,
    )


GUARD_MS = 600  # the widget ignores clicks on a button this soon after a state change


def settle(page: Any) -> None:
    """Waits until a click on the widget's buttons counts again (the double-click guard)."""
    page.wait_for_function(
        "ms => { const s = window.__oneinbox.events.filter(e => e.type === 'state').pop();"
        " return !s || performance.now() - s.t > ms; }",
        arg=GUARD_MS + 50,
        timeout=TIMEOUT_MS,
    )
