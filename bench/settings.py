"""How long and how hard each part of the benchmark runs: full, or smoke (seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Settings:
    smoke: bool
    out: Path = OUT
    # pass-through, in-process
    inproc_processes: int = 3
    inproc_rounds: int = 50
    inproc_round_seconds: float = 0.015
    # pass-through, over HTTP
    http_rounds: int = 14
    http_seconds: int = 1
    http_connections: int = 32
    # broker
    concurrency: tuple[int, ...] = (1, 16, 64, 256)
    broker_seconds: int = 4
    broker_rounds: int = 2
    max_cell_seconds: int = 30
    warm_up: bool = True
    settle_window: float = 0.2
    """A slow variant's cell runs longer (up to this) so it completes a few waves."""
    costs_rounds: int = 5
    costs_round_seconds: float = 0.25
    costs_warm_up_calls: int = 320
    # memory
    memory_calls: int = 20_000
    memory_chunks: int = 4
    memory_connections: int = 64
    # widget
    browser: bool = True

    @classmethod
    def full(cls) -> Settings:
        return cls(smoke=False)

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            smoke=True,
            inproc_processes=1,
            inproc_rounds=3,
            inproc_round_seconds=0.01,
            http_rounds=1,
            http_seconds=1,
            concurrency=(16,),
            broker_seconds=1,
            broker_rounds=1,
            max_cell_seconds=2,
            warm_up=False,
            settle_window=0.1,
            costs_rounds=1,
            costs_round_seconds=0.02,
            costs_warm_up_calls=32,
            memory_calls=500,
            memory_chunks=1,
            memory_connections=16,
            browser=False,
        )
