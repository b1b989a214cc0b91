"""``python -m oneinbox_asgi emulator`` and ``demo`` as a person starts them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from oneinbox_emulator.serving import BackgroundServers, Served, bind

from ..support import stop_process
from .receiver import Receiver, receiver_app

pytestmark = pytest.mark.slow


@contextmanager
def command(*args: str, env: dict[str, str] | None = None) -> Iterator[list[str]]:
    """Run ``python -m oneinbox_asgi *args``; yield its first lines of output; stop it after."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}
    environment |= env or {}
    process = subprocess.Popen(
        [sys.executable, "-m", "oneinbox_asgi", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        yield lines
    finally:
        stop_process(process)


def loaded_by_help(module: str, *args: str) -> tuple[str, set[str]]:
    """``python -m <module> *args --help`` in a fresh interpreter: its output and the modules
    of the emulator and its extras that it imported."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{module!r}, *{list(args)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('oneinbox_emulator', 'uvicorn', 'aiortc', 'jwt', 'livekit', 'numpy', 'av')\n"
        "print('LOADED', *sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    out, _, loaded = done.stdout.rpartition("LOADED")
    return out, set(loaded.split())


@pytest.mark.parametrize("module", ["oneinbox_asgi", "oneinbox_emulator"])
def test_help_imports_neither_the_emulator_nor_its_extras(module: str) -> None:
    for args in [(), ("emulator",), ("demo",)]:
        text, loaded = loaded_by_help(module, *args)
        assert f"usage: python -m {module}" in text, text
        assert loaded <= {"oneinbox_emulator", "oneinbox_emulator.cli"}, loaded
    text, _ = loaded_by_help(module, "demo")
    for option in ("--port", "--emulator-port", "--api-key", "--agent-id", "--reply"):
        assert option in text


def test_the_emulator_command_prints_how_to_use_it() -> None:
    with command("emulator", "--port", "0") as lines:
        text = "\n".join(lines)
        base_url = re.search(r"ONEINBOX_BASE_URL=(\S+)", text)
        key = re.search(r"ONEINBOX_API_KEY=(\S+)", text)
        assert base_url and key, text
        assert base_url.group(1).startswith("http://127.0.0.1:")
        assert "ONEINBOX_AGENT_ID=agt_demo" in text
        created = httpx.post(
            f"{base_url.group(1)}/v1/calls/web",
            json={"agent_id": "agt_demo"},
            headers={"authorization": f"Bearer {key.group(1)}"},
        )
        assert created.status_code == 201
        assert created.json()["server_url"] == base_url.group(1).replace("http", "ws", 1)


def test_the_demo_command_serves_the_site_on_the_emulator() -> None:
    with command("demo", "--port", "0") as lines:
        text = "\n".join(lines)
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", text)
        assert url, text
        assert "local OneInbox emulator at http://127.0.0.1:" in text
        with httpx.Client(base_url=url.group(1)) as browser:
            assert "Sign in" in browser.get("/").text
            browser.post("/login", data={"name": "Ada"})
            assert "Hello, Ada" in browser.get("/").text
            started = browser.post("/oneinbox/start-call", json={})
            assert started.status_code == 201, started.text
            assert started.json()["server_url"].startswith("ws://127.0.0.1:")


def test_the_demo_needs_an_agent_for_the_real_oneinbox() -> None:
    with command("demo", "--port", "0", env={"ONEINBOX_API_KEY": "oi_sk_x"}) as lines:
        assert any("set ONEINBOX_AGENT_ID" in line for line in lines), lines


@pytest.mark.anyio
async def test_the_demo_signs_in_without_form_parsing_extras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pip install oneinbox-asgi[emulator]`` has no python-multipart: no request.form()."""
    from starlette.requests import Request

    from oneinbox_emulator.demo import DemoConfig, build_demo_app

    def no_multipart(self: Request) -> None:
        raise AssertionError("The `python-multipart` library must be installed")

    monkeypatch.setattr(Request, "form", no_multipart)
    app = build_demo_app(DemoConfig(api_key="oi_sk_x", agent_id="agt_demo"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        signed_in = await browser.post("/login", data={"name": "Ada & <Bob>"})
        assert signed_in.status_code == 303
        page = (await browser.get("/")).text
        assert "Hello, Ada &amp; &lt;Bob&gt;" in page
        assert 'nonce="' in page and "content-security-policy" in (await browser.get("/")).headers


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A loopback webhook receiver in a background thread (the commands run as processes)."""
    receiver = Receiver()
    served = Served(receiver_app(receiver), bind(), "off")
    receiver.url = served.url + "/hook"
    with BackgroundServers([served]):
        yield receiver


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)


def test_the_emulator_command_delivers_webhooks() -> None:
    with webhook_receiver() as receiver:
        args = ("emulator", "--port", "0", "--join-timeout", "0.5", "--record-delay", "0.2")
        with command(*args, "--webhook-url", receiver.url + "?key=s3cr3t") as lines:
            text = "\n".join(lines)
            assert f"Call events are POSTed to {receiver.url}\n" in text
            assert "s3cr3t" not in text
            base_url = re.search(r"ONEINBOX_BASE_URL=(\S+)", text)
            key = re.search(r"ONEINBOX_API_KEY=(\S+)", text)
            assert base_url and key, text
            created = httpx.post(
                f"{base_url.group(1)}/v1/calls/web",
                json={"agent_id": "agt_demo"},
                headers={"authorization": f"Bearer {key.group(1)}"},
            ).json()
            wait_for(lambda: "call.analyzed" in receiver.events)
    assert receiver.events == ["call.failed", "call.analyzed"]
    failed = receiver.delivered("call.failed")
    assert failed["call_id"] == created["id"] and failed["end_reason"] == "join_timeout"


def test_the_demo_command_passes_the_webhook_url_to_its_emulator() -> None:
    with webhook_receiver() as receiver:
        args = ("demo", "--port", "0", "--join-timeout", "0.5", "--webhook-url", receiver.url)
        with command(*args) as lines:
            text = "\n".join(lines)
            assert f"call events are POSTed to {receiver.url}" in text
            url = re.search(r"open (http://127\.0\.0\.1:\d+/)", text)
            assert url, text
            with httpx.Client(base_url=url.group(1)) as browser:
                browser.post("/login", data={"name": "Ada"})
                started = browser.post("/oneinbox/start-call", json={})
                assert started.status_code == 201, started.text
            wait_for(lambda: "call.failed" in receiver.events)
    assert receiver.delivered("call.failed")["call_id"] == started.json()["call_id"]


def test_the_demo_refuses_a_webhook_url_for_the_real_oneinbox() -> None:
    env = {"ONEINBOX_API_KEY": "oi_sk_x", "ONEINBOX_AGENT_ID": "agt_x"}
    with command("demo", "--port", "0", "--webhook-url", "http://127.0.0.1:9/h", env=env) as lines:
        assert any("configure webhooks at OneInbox" in line for line in lines), lines
