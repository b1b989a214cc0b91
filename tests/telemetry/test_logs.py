"""The audit lines as JSON for log pipelines, with the trace they belong to; the README's
uvicorn command shows them."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oneinbox_asgi.logs import JSONFormatter
from oneinbox_emulator.api import EmulatorAPI

from ..support import START, client_for
from .support import Otel

ROOT = Path(__file__).resolve().parents[2]
README_COMMAND = "uvicorn examples.starlette_app:app --log-config examples/log_config.json"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.mark.anyio
async def test_an_audit_line_is_json_with_its_fields_and_trace(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    handler = Lines()
    logger = logging.getLogger("oneinbox_asgi")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        app = otel.broker(http_client=upstream_client)
        async with client_for(app, "u1") as client:
            answer = await client.post(START, json={})
            refused = await client.post(START, json={})  # at the cap
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert answer.status_code == 201 and refused.status_code == 429
    started, denied = handler.lines
    assert started["level"] == "INFO" and started["logger"] == "oneinbox_asgi"
    assert str(started["message"]).startswith("call started outcome=started")
    assert str(started["time"]).endswith("+00:00")
    fields = started["oneinbox"]
    assert isinstance(fields, dict)
    assert fields["outcome"] == "started" and fields["call_id"] == answer.json()["call_id"]
    route, _ = otel.spans("oneinbox start-call")
    assert route.context is not None
    assert started["trace_id"] == f"{route.context.trace_id:032x}"
    assert started["span_id"] == f"{route.context.span_id:016x}"
    assert denied["trace_id"] != started["trace_id"]  # each request its own trace
    assert denied["oneinbox"]["outcome"] == "too_many_calls"  # type: ignore[index]


def test_a_record_without_a_span_or_fields_is_still_one_json_object() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    line = json.loads(JSONFormatter().format(record))
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["message"] == "a b"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JSONFormatter().format(record))["exception"]


def test_the_readmes_uvicorn_command_prints_json_audit_lines() -> None:
    assert README_COMMAND in (ROOT / "README.md").read_text()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}
    command = [sys.executable, "-m", *README_COMMAND.split(), "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                try:
                    client.get("/")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    assert server.poll() is None, server.communicate()
                    time.sleep(0.1)
            client.post("/login", data={"name": "Ada"})
            assert client.post(START, json={}).status_code == 201
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    audit = [line for line in lines if line["logger"] == "oneinbox_asgi"]
    assert len(audit) == 1, (out, err)
    assert audit[0]["oneinbox"]["outcome"] == "started"
    assert any(line["logger"] == "uvicorn.access" for line in lines)  # the server's too
