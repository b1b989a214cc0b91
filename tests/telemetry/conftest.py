from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .support import Otel


@pytest.fixture
async def otel() -> AsyncIterator[Otel]:
    made = Otel()
    yield made
    await made.shut()
