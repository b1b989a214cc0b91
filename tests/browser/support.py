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

from oneinbox_asgi.widget import script_tag

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


PERMISSION_PROMPT = """
(() => {
  const query = navigator.permissions.query.bind(navigator.permissions);
  navigator.permissions.query = (d) => d && d.name === "microphone"
    ? Promise.resolve(Object.assign(new EventTarget(), { state: "prompt", name: "microphone" }))
    : query(d);
})();
"""


def widget_page(site: Site, body: str = "", *, csp: bool = True, **data: str) -> str:
    def render(nonce: str) -> str:
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title>'
            f"{script_tag(nonce=nonce, **data)}</head>"
            f"<body><h1>Host page</h1>{body}</body></html>"
        )

    return site.page(render, csp=csp)


# -- the voice stack: a real emulator (API and voice server) behind a broker, plus pages on
# other origins ----------------------------------------------------------------------------

GREETING = "Hi {name}! This is the OneInbox demo agent. Say something."
SALES_GREETING = "Hi{customer_name}! Sales here. What can I do for you?"


@dataclass
class Exchange:
    """One request to the broker's routes and the answer's status and headers."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    status: int = 0
    answer: dict[str, str] = field(default_factory=dict)


@dataclass
class VoiceStack:
    """The emulator, the host app with the broker (``broker``, on 127.0.0.1) and the same
    page app on two other origins of the same site (other ports of 127.0.0.1): ``sibling``
    is in the broker's ``trusted_origins``, ``stranger`` is not."""

    broker: str
    sibling: str
    stranger: str
    emulator: Any  # oneinbox_emulator.app.Emulator
    exchanges: list[Exchange] = field(default_factory=list)

    def to(self, route: str, method: str = "POST", origin: str | None = None) -> list[Exchange]:
        return [
            e
            for e in self.exchanges
            if e.method == method
            and e.path == f"/oneinbox/{route}"
            and (origin is None or e.headers.get("origin") == origin)
        ]

    def calls(self) -> list[Any]:
        """Every call the emulator created (oneinbox_emulator.registry.Call), newest first."""
        found, _ = self.emulator.registry.list(limit=1000)
        return list(found)


def login_at(page: Any, url: str, name: str) -> str:
    """Signs a new user named ``name`` in at the host app ``url``; returns its id."""
    user = f"u-{secrets.token_hex(4)}"
    response = page.request.get(f"{url}/login?id={user}&name={name}")
    assert response.ok
    return user
