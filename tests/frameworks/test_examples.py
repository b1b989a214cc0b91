"""Every example in examples/ signs a user in through its own form and starts a call.

The examples run without ``ONEINBOX_API_KEY``, so each talks to the in-process emulator
it sets up; the call it starts must carry the signed-in user's name.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .example_flow import run

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

EXPECTED: dict[str, Any] = {
    "visitor_start": 401,
    "signed_out_page": [200, True],
    "login": [303, "/"],
    "signed_in_page": [True, True],
    "widget": 200,
    "start": 201,
    "variables": {"customer_name": "Ada"},
    "logout": 303,
    "start_after_logout": 401,
}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Litestar's default logging config replaces the root logger's handlers: put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _without_oneinbox_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}


@pytest.mark.parametrize(
    "name",
    ["starlette_app", "fastapi_app", "quart_app", "litestar_app", "falcon_app", "blacksheep_app"],
)
@pytest.mark.usefixtures("root_logging")
async def test_example_signs_in_and_starts_a_call(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("ONEINBOX_"):
            monkeypatch.delenv(key)
    monkeypatch.delitem(sys.modules, f"examples.{name}", raising=False)  # import it afresh
    outcome = json.loads(json.dumps(await run(f"examples.{name}", "app")))
    assert outcome == EXPECTED


def test_django_example_signs_in_and_starts_a_call() -> None:
    """In its own process: the example configures Django, which happens once per process."""
    completed = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "tests.frameworks.example_flow",
            "examples.django_app:application",
        ],
        cwd=ROOT,
        env=_without_oneinbox_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == EXPECTED
    assert "in-process OneInbox emulator" in completed.stderr
