"""The results: rows of the summary table, detail tables, the machine, and RESULTS.md."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs


@dataclass
class Row:
    """One line of the summary table. ``passed`` is None where there is no target."""

    measure: str
    value: str
    ratio: str = "—"
    target: str = "—"
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "—" if self.target == "—" else "n/a"
        return "pass" if self.passed else "**miss**"


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    """Markdown blocks (detail tables, notes) shown below the summary."""
    data: dict[str, Any] = field(default_factory=dict)
    """The measurements behind the rows, for the notes."""


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(sections: list[Section]) -> str:
    rows: list[list[str]] = []
    for section in sections:
        for row in section.rows:
            rows.append([row.measure, row.value, row.ratio, row.target, row.verdict])
    return table(["measure", "value", "ratio", "target", "pass/fail"], rows)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "—"


def _command_output(argv: list[str]) -> str:
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "—"
    return (run.stdout or run.stderr).strip().splitlines()[0] if (run.stdout or run.stderr) else "—"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(extra: dict[str, str]) -> str:
    packages = [
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "fastapi",
        "httpx",
        "httpcore",
        "aiohttp",
        "anyio",
        "sniffio",
        "redis",
    ]
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    commit = _command_output(["git", "-C", str(procs.ROOT), "rev-parse", "--short", "HEAD"])
    status = subprocess.run(
        ["git", "-C", str(procs.ROOT), "status", "--porcelain", "--", "oneinbox_asgi"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.split()
    changed = [path for path in status if path.startswith("oneinbox_asgi/")]
    if changed:
        commit += f" (package files changed since it, measured as they were: {', '.join(changed)})"
    lines = [
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit}",
        f"- machine: {os.cpu_count()} cores ({procs.cores()} usable), "
        f"{cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()}); {versions}",
        f"- node {_command_output(['node', '--version'])}, "
        f"redis-server {_command_output(['redis-server', '--version']).split(' sha=')[0]}",
    ]
    lines += [f"- {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def document(title: str, sections: list[Section], about: dict[str, str], preface: str) -> str:
    parts = [f"# {title}", "", preface.strip(), "", "## Machine", "", machine(about), ""]
    parts += ["## Summary", "", summary(sections), ""]
    for section in sections:
        if section.details:
            parts += [f"## {section.title}", ""]
            for block in section.details:
                parts += [block.strip(), ""]
    return "\n".join(parts)
