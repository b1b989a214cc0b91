"""The API key and participant tokens never appear in a log record, at any level and on
any logger, nor in a response the browser gets: not on success, not on any failure,
not when OneInbox echoes them back, not in exception traces."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from oneinbox_asgi import CallRequest
from oneinbox_emulator.api import EmulatorAPI

from ..apps import starlette_app
from ..support import API_KEY, START, logged_in

pytestmark = pytest.mark.anyio

ECHOED = json.dumps({"detail": f"Invalid key {API_KEY}", "message": API_KEY}).encode()
FAULTS: list[dict[str, Any]] = [
    {"status": 401, "body": ECHOED},
    {"status": 403, "body": ECHOED},
    {"status": 404, "body": ECHOED},
    {"status": 422, "body": json.dumps({"detail": [{"msg": f"bad {API_KEY}"}]}).encode()},
    {"status": 429, "body": ECHOED, "headers": {"retry-after": "3"}},
    {"status": 500, "body": ECHOED},
    {"body": ECHOED},  # a 201 that is not a call
    {"hang": True},
]


def every_logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Messages, arguments, exception traces and extra fields of every record."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
        if record.exc_info and record.exc_info[1] is not None:
            exc: BaseException | None = record.exc_info[1]
            while exc is not None:
                parts.append(repr(exc))
                exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


async def test_no_secret_in_logs_or_answers_across_every_path(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx's too

    def broken_variables(request: CallRequest) -> dict[str, str]:
        raise RuntimeError("the CRM is down")

    tokens: list[str] = []
    answers: list[str] = []
    app = starlette_app(http_client=upstream_client, timeout=0.3)
    async with logged_in(app) as client:
        started = await client.post(START, json={})
        assert started.status_code == 201
        tokens.append(started.json()["participant_token"])
        answers.append(started.text)
        end_token = started.json()["end_token"]
        ended = await client.post("/oneinbox/end-call", json={"end_token": end_token})
        assert ended.status_code == 200, ended.text
        for fault in FAULTS:
            oneinbox.behave()
            oneinbox.misbehave(**fault)
            failed = await client.post(START, json={})
            assert failed.status_code >= 500
            answers.append(failed.text)
    oneinbox.behave()
    app = starlette_app(http_client=upstream_client, variables=broken_variables)
    async with logged_in(app) as client:
        broken = await client.post(START, json={})
        assert broken.status_code == 500
        answers.append(broken.text)

    logged = every_logged_text(caplog)
    assert "the CRM is down" in logged  # traces are logged: the check below has teeth
    assert "Invalid key" not in "\n".join(answers)  # upstream's words are not passed on
    for secret in [API_KEY, *tokens]:
        assert secret not in logged
    assert API_KEY not in "\n".join(answers)
