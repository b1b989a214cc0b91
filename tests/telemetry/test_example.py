"""examples/telemetry_demo.py runs: the demo with the SDK, spans on the console and the
broker's metrics on a Prometheus endpoint, after a call through the real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, server: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.2)


def scrape(url: str, wanted: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while True:
        text = httpx.get(url, timeout=5).text
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


def test_the_telemetry_demo_exports_spans_and_prometheus_metrics() -> None:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "examples/telemetry_demo.py",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--record-delay",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_for(f"http://127.0.0.1:{port}/", server)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.post(
                "/login",
                content=b"name=Ada",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            started = client.post("/oneinbox/start-call", json={})
            assert started.status_code == 201, started.text
            ended = client.post(
                "/oneinbox/end-call", json={"end_token": started.json()["end_token"]}
            )
            assert ended.status_code == 200
        text = scrape(metrics_url, "oneinbox_voice_connect_setup_seconds_count")
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops as it says
        out, err = server.communicate(timeout=20)
    lines = text.splitlines()

    def value(prefix: str) -> float:
        (line,) = [line for line in lines if line.startswith(prefix)]
        return float(line.rsplit(" ", 1)[1])

    assert value("oneinbox_calls_started_total{") == 1
    assert value("oneinbox_calls_live{") == 0
    assert value("oneinbox_call_duration_seconds_count{") == 1
    assert value("oneinbox_voice_connect_setup_seconds_count{") == 1
    assert any(line.startswith("http_client_request_duration_seconds_count{") for line in lines)
    assert '"name": "oneinbox start-call"' in out, err
    assert '"name": "POST /v1/calls/web"' in out
