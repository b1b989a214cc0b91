from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import Otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = Otel()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()
