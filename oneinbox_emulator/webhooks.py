"""Webhook deliveries: JSON POSTs to one URL, retried with backoff, never blocking a call.

Each event is its own task, so a slow or failing receiver never holds up the call that
caused it. Events of one call are delivered in order (``transcript.final`` after
``call.ended``): each waits for the call's previous delivery to finish, delivered or given
up. Every delivery is bounded: ``tries`` attempts, each within ``timeout`` seconds, the
waits between them ``first_retry`` seconds, then ``backoff`` times longer each; at most
``max_pending`` deliveries at once.

OneInbox documents only that it retries when the receiver does not answer 2xx "within a few
seconds"; the schedule here is the emulator's own (5 tries over about 30 s by default). No
signature is sent: OneInbox's scheme is not documented.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("oneinbox_emulator.webhooks")

USER_AGENT = "oneinbox-emulator-webhooks"


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    url: str
    tries: int = 5
    """Attempts per event, the first included."""
    first_retry: float = 2.0
    """Seconds before the second attempt; each later wait is ``backoff`` times longer."""
    backoff: float = 2.0
    timeout: float = 5.0
    """Seconds for one attempt, connection included."""
    max_pending: int = 1000
    """Deliveries in flight at once; events beyond that are dropped (and logged)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook URL must be http(s)://host/...: {self.url!r}")
        if self.tries < 1 or self.timeout <= 0 or self.first_retry < 0 or self.backoff < 1:
            raise ValueError("webhook tries >= 1, timeout > 0, first_retry >= 0, backoff >= 1")

    def retry_delays(self) -> list[float]:
        """The waits between attempts: ``tries - 1`` of them."""
        return [self.first_retry * self.backoff**n for n in range(self.tries - 1)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one event's delivery ended."""

    event: str
    call_id: str
    delivered: bool
    attempts: int
    last_status: int | None
    """The receiver's last HTTP status; None if the last attempt got no answer."""


def safe_url(url: str) -> str:
    """The URL without its query, fragment or credentials: safe to log or print (webhook
    URLs often carry a secret in the query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookSender:
    """Delivers events to ``options.url``; call ``send`` from the event loop, ``aclose`` at
    shutdown (it cancels every delivery still pending and closes the HTTP client)."""

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options
        self.outcomes: deque[Outcome] = deque(maxlen=1000)
        """The most recent deliveries' results (for tests and for a person debugging)."""
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_by_call: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def send(self, payload: Mapping[str, Any]) -> None:
        """Queue one event (``payload["event"]``, ``payload["call_id"]``); returns at once."""
        if self._closed:
            return
        if len(self._tasks) >= self.options.max_pending:
            log.warning(
                "webhook %s for %s dropped: too many pending",
                payload.get("event"),
                safe_url(self.options.url),
            )
            return
        call_id = str(payload.get("call_id", ""))
        previous = self._last_by_call.get(call_id)
        task = asyncio.get_running_loop().create_task(self._deliver(previous, dict(payload)))
        self._tasks.add(task)
        self._last_by_call[call_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            if self._last_by_call.get(call_id) is done:
                del self._last_by_call[call_id]

        task.add_done_callback(forget)

    def reopen(self) -> None:
        """Accept events again after ``aclose`` (an emulator served a second time)."""
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: a proxy from the environment must not see the deliveries.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def _deliver(self, previous: asyncio.Task[None] | None, payload: dict[str, Any]) -> None:
        if previous is not None:
            # Order within a call; the previous delivery's own failure does not matter here.
            await asyncio.wait({previous})
        options = self.options
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # The same id on every attempt, so a receiver can tell a retry from a new event.
            "x-oneinbox-delivery": uuid.uuid4().hex,
        }
        event, call_id = str(payload.get("event")), str(payload.get("call_id"))
        delays = options.retry_delays()
        status: int | None = None
        for attempt in range(1, options.tries + 1):
            status = None
            try:
                async with asyncio.timeout(options.timeout):
                    response = await self._http().post(options.url, content=body, headers=headers)
                status = response.status_code
                if 200 <= status < 300:
                    self.outcomes.append(Outcome(event, call_id, True, attempt, status))
                    return
                problem = f"HTTP {status}"
            except TimeoutError:
                problem = f"no answer in {options.timeout} s"
            except Exception as exc:  # refused, reset, protocol errors: all worth a retry
                problem = type(exc).__name__
            if attempt < options.tries:
                log.info(
                    "webhook %s to %s: %s (attempt %d of %d)",
                    event, safe_url(options.url), problem, attempt, options.tries,
                )  # fmt: skip
                await asyncio.sleep(delays[attempt - 1])
            else:
                log.warning(
                    "webhook %s to %s: %s; gave up after %d attempts",
                    event, safe_url(options.url), problem, attempt,
                )  # fmt: skip
        self.outcomes.append(Outcome(event, call_id, False, options.tries, status))
