"""The emulator's HTTP API: what api.oneinbox.ai documents for web calls.

``EmulatorAPI`` is a plain ASGI app. Tests run it in-process (``httpx.ASGITransport``)
or over loopback with uvicorn; it records what it received and can be told to
misbehave, so the broker's error mapping can be proven against it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Message, Receive, Scope, Send

from .registry import CallRegistry
from .tokens import TokenSigner

DEFAULT_API_KEY = "oi_sk_emulator_0123456789abcdef"
MAX_BODY_BYTES = 256 * 1024


@dataclass(slots=True)
class Fault:
    """One way to misbehave, applied to the next ``times`` requests (``None``: until told)."""

    status: int | None = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    times: int | None = None


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _detail(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _problem(loc: list[str], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a FastAPI-shaped 422 ``detail`` list."""
    return {"loc": loc, "msg": msg, "type": kind}


def _missing(field_name: str) -> dict[str, Any]:
    return _problem(["body", field_name], "Field required", "missing")


def _wrong_type(field_name: str, expected: str) -> dict[str, Any]:
    return _problem(["body", field_name], f"Input should be a valid {expected}", f"{expected}_type")


class EmulatorAPI:
    """POST /v1/calls/web, GET /v1/calls/{id}, POST /v1/calls/{id}/stop, GET /v1/calls,
    GET /v1/usage.

    ``max_calls_per_day``: the account's daily cap (UTC days); creating a call beyond it is
    answered 429 (how OneInbox signals it is not documented). None: no cap, and
    ``/v1/usage`` shows ``max_calls_per_day`` and ``calls_remaining_today`` as null.
    """

    def __init__(
        self,
        *,
        registry: CallRegistry | None = None,
        api_keys: Collection[str] = (DEFAULT_API_KEY,),
        server_url: str = "ws://127.0.0.1:7880",
        signer: TokenSigner | None = None,
        token_ttl: float = 15 * 60,
        max_calls_per_day: int | None = None,
    ) -> None:
        self.registry = registry or CallRegistry()
        self.max_calls_per_day = max_calls_per_day
        self.api_keys = frozenset(api_keys)
        self.server_url = server_url
        self.signer = signer or TokenSigner("APIemulator", secrets.token_urlsafe(32))
        self.token_ttl = token_ttl
        self.received: list[Received] = []
        self._faults: list[Fault] = []
        self._router = Router(
            routes=[
                Route("/v1/calls/web", self._create_web_call, methods=["POST"]),
                Route("/v1/calls", self._list_calls, methods=["GET"]),
                Route("/v1/calls/{call_id}", self._get_call, methods=["GET"]),
                Route("/v1/calls/{call_id}/stop", self._stop_call, methods=["POST"]),
                Route("/v1/usage", self._usage, methods=["GET"]),
            ]
        )

    # -- test controls ---------------------------------------------------------------

    def misbehave(self, **fault: Any) -> Fault:
        """Queue a fault (see ``Fault``); faults apply in the order they were queued."""
        entry = Fault(**fault)
        self._faults.append(entry)
        return entry

    def behave(self) -> None:
        self._faults.clear()

    def _next_fault(self) -> Fault | None:
        while self._faults:
            fault = self._faults[0]
            if fault.times is None:
                return fault
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.pop(0)
                return fault
            self._faults.pop(0)
        return None

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._router(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _detail(413, "Request body too large")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        self.received.append(
            Received(
                method=scope["method"],
                path=scope["path"],
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                body=bytes(body),
            )
        )
        fault = self._next_fault()
        if fault is not None:
            if fault.hang:
                await anyio.sleep_forever()
            if fault.delay:
                await anyio.sleep(fault.delay)
            if fault.status is not None:
                response = Response(
                    fault.body if fault.body is not None else b"",
                    status_code=fault.status,
                    headers=fault.headers,
                    media_type=fault.content_type,
                )
                await response(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        if fault is not None and fault.body is not None:
            await Response(fault.body, 201, fault.headers, fault.content_type)(scope, replay, send)
            return
        await self._router(scope, replay, send)

    # -- endpoints -------------------------------------------------------------------

    def _authenticate(self, request: Request) -> JSONResponse | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key not in self.api_keys:
            return _detail(401, "Invalid API key")
        return None

    async def _create_web_call(self, request: Request) -> Response:
        if (denied := self._authenticate(request)) is not None:
            return denied
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _detail(422, [_problem(["body"], "JSON decode error", "json_invalid")])
        if not isinstance(payload, dict):
            return _detail(422, [_problem(["body"], "Input should be an object", "dict_type")])
        problems: list[dict[str, Any]] = []
        agent_id = payload.get("agent_id")
        if agent_id is None:
            problems.append(_missing("agent_id"))
        elif not isinstance(agent_id, str):
            problems.append(_wrong_type("agent_id", "string"))
        for name in ("variables", "metadata", "overrides"):
            if name in payload and not isinstance(payload[name], dict):
                problems.append(_wrong_type(name, "dictionary"))
        if problems:
            return _detail(422, problems)
        assert isinstance(agent_id, str)
        if agent_id not in self.registry.agents:
            return _detail(404, "Agent not found")
        cap = self.max_calls_per_day
        if cap is not None and self.registry.calls_today() >= cap:
            return _detail(429, f"Daily call limit reached ({cap} calls per day)")
        setup_started = time.perf_counter()
        variables: dict[str, Any] = payload.get("variables") or {}
        room_name = "room_" + secrets.token_hex(8)
        token = self.signer.mint(
            room=room_name,
            identity="caller-" + room_name.removeprefix("room_"),
            name=str(variables.get("customer_name", "")),
            ttl=self.token_ttl,
        )
        call = self.registry.create(
            agent_id,
            variables,
            payload.get("metadata") or {},
            room_name=room_name,
            setup_ms=(time.perf_counter() - setup_started) * 1000,
        )
        record = call.record()
        return JSONResponse(
            {
                "id": call.id,
                "agent_id": call.agent_id,
                "type": "web",
                "status": call.status,
                "room_name": call.room_name,
                "server_url": self.server_url,
                "participant_token": token,
                "created_at": record["created_at"],
            },
            status_code=201,
        )

    async def _get_call(self, request: Request) -> Response:
        if (denied := self._authenticate(request)) is not None:
            return denied
        call = self.registry.get(request.path_params["call_id"])
        if call is None:
            return _detail(404, "Call not found")
        return JSONResponse(call.record())

    async def _stop_call(self, request: Request) -> Response:
        if (denied := self._authenticate(request)) is not None:
            return denied
        call = self.registry.get(request.path_params["call_id"])
        if call is None:
            return _detail(404, "Call not found")
        return JSONResponse(self.registry.end(call.id, "api_stop").record())

    async def _list_calls(self, request: Request) -> Response:
        if (denied := self._authenticate(request)) is not None:
            return denied
        try:
            limit = min(max(int(request.query_params.get("limit", "20")), 1), 100)
            offset = max(int(request.query_params.get("offset", "0")), 0)
        except ValueError:
            return _detail(
                422, [_problem(["query"], "Input should be a valid integer", "int_parsing")]
            )
        items, total = self.registry.list(
            agent_id=request.query_params.get("agent_id"),
            status=request.query_params.get("status"),
            limit=limit,
            offset=offset,
        )
        return JSONResponse(
            {"items": [c.record() for c in items], "total": total, "limit": limit, "offset": offset}
        )

    async def _usage(self, request: Request) -> Response:
        if (denied := self._authenticate(request)) is not None:
            return denied
        return JSONResponse(self.registry.usage(max_calls_per_day=self.max_calls_per_day))
