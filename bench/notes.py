"""The notes under the tables: what a missed target means, computed from the run's numbers."""

from __future__ import annotations

from .report import Section
from .settings import Settings


def render(sections: list[Section], raw: dict[str, object], settings: Settings) -> str:
    missed = [row for section in sections for row in section.rows if row.passed is False]
    if not missed:
        return "\n## Notes\n\nEvery target with a verdict was met in this run.\n"
    lines = ["", "## Notes", ""]
    lines += [f"- missed: {row.measure} ({row.value}; target {row.target})" for row in missed]
    return "\n".join(lines) + "\n"
