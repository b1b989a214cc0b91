"""Fixtures for the emulator's own tests: the API in-process, the whole emulator on loopback,
and (for the browser tests) Chromium with the stock livekit-client bundle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..chromium import launched, unavailable
from .support import LiveEmulator, livekit_client_bundle, quick_emulator, serving


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live() -> AsyncIterator[LiveEmulator]:
    async with serving(quick_emulator(thinking_seconds=0.05)) as served:
        yield served


@pytest.fixture
async def live_short() -> AsyncIterator[LiveEmulator]:
    """Calls end by themselves after one second (max_duration)."""
    async with serving(quick_emulator(max_duration=1.0)) as served:
        yield served


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched() as browser:
        yield browser


@pytest.fixture(scope="module")
def livekit_js() -> Path:
    found = livekit_client_bundle()
    if found is None:
        unavailable("livekit-client is not installed (run `npm ci` in widget/)")
    return found
