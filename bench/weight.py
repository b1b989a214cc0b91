"""Section 4: widget weight. Raw and gzip bytes of the built files, and, in Chromium,
the bytes a page downloads before any click (and that none of it is LiveKit).

Reads whatever ``oneinbox_asgi/static/`` holds; says "not built" when there is nothing.
The browser part runs only when Debian's Chromium and Playwright are installed (full
mode); the static part always runs.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs
from .report import Row, Section, table
from .settings import Settings

STATIC = procs.ROOT / "oneinbox_asgi" / "static"
LOADER = "widget.js"
CHUNK = re.compile(r"call-[0-9a-f]{8,}\.js\Z")
CSS = re.compile(r"widget-[0-9a-f]{8,}\.css\Z")
LOADER_BUDGET = 6 * 1024
CHUNK_BUDGET = 160 * 1024
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
WAIT_MS = 10_000


@dataclass
class Built:
    name: str
    raw: int
    gzip: int


def _built(path: Path) -> Built:
    body = path.read_bytes()
    return Built(path.name, len(body), len(gzip.compress(body, compresslevel=9, mtime=0)))


def built_files() -> dict[str, Built]:
    """``loader``, ``chunk`` and ``css`` found in the static folder (missing ones absent)."""
    found: dict[str, Built] = {}
    if not STATIC.is_dir():
        return found
    if (STATIC / LOADER).is_file():
        found["loader"] = _built(STATIC / LOADER)
    for path in sorted(STATIC.iterdir()):
        if CHUNK.search(path.name):
            found["chunk"] = _built(path)
        elif CSS.search(path.name):
            found["css"] = _built(path)
    return found


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def browser_before_click(settings: Settings) -> dict[str, Any]:
    """Load a host page in Chromium; what it fetched before a click, and the chunk after one."""
    from playwright.sync_api import sync_playwright

    log_dir = settings.out / "logs"
    with procs.Group(log_dir) as group:
        upstream = group.start(procs.python_server("upstream-widget", "upstream", None))
        site = group.start(
            procs.python_server("widget-page", "widget-page", None, upstream=upstream.url)
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True
            )
            try:
                page = browser.new_page()
                fetched: list[Any] = []
                page.on("requestfinished", lambda request: fetched.append(request))
                page.goto(site.url + "/", wait_until="load", timeout=WAIT_MS)
                page.get_by_role("button", name="Talk to AI").wait_for(timeout=WAIT_MS)
                page.wait_for_load_state("networkidle", timeout=WAIT_MS)
                page.wait_for_timeout(2500)  # past the loader's idle-prefetch fallback (2 s)
                before = [_transfer(request, site.url) for request in fetched]
                with page.expect_response(CHUNK, timeout=WAIT_MS) as chunk_info:
                    page.get_by_role("button", name="Talk to AI").click()
                chunk = chunk_info.value
                chunk.finished()
                after = _transfer(chunk.request, site.url)
            finally:
                browser.close()
    return {"before": before, "chunk": after}


def _transfer(request: Any, origin: str) -> dict[str, Any]:
    sizes = request.sizes()
    response = request.response()
    return {
        "path": request.url.removeprefix(origin),
        "status": response.status if response else None,
        "encoding": (response.headers.get("content-encoding") if response else None) or "identity",
        "body": sizes["responseBodySize"],
        "headers": sizes["responseHeadersSize"],
    }


def measure(settings: Settings) -> Section:
    section = Section("Widget weight")
    files = built_files()
    if "loader" not in files:
        section.rows.append(Row("widget: loader", "not built", "—", "≤ 6 KB gzip", None))
        section.rows.append(Row("widget: call chunk", "not built", "—", "≤ 160 KB gzip", None))
        return section
    loader = files["loader"]
    section.rows.append(
        Row(
            "widget: loader (widget.js), gzip -9",
            f"{_kb(loader.gzip)} ({_kb(loader.raw)} raw)",
            "—",
            "≤ 6 KB gzip",
            loader.gzip <= LOADER_BUDGET,
        )
    )
    chunk = files.get("chunk")
    section.rows.append(
        Row(
            "widget: call chunk (livekit-client), gzip -9",
            f"{_kb(chunk.gzip)} ({_kb(chunk.raw)} raw)" if chunk else "not built",
            "—",
            "≤ 160 KB gzip",
            chunk.gzip <= CHUNK_BUDGET if chunk else None,
        )
    )
    listing = [[b.name, f"{b.raw:,}", f"{b.gzip:,}"] for b in files.values()]
    section.details.append(
        "Built files in `oneinbox_asgi/static/` (gzip -9, as the server precomputes them).\n\n"
        + table(["file", "raw bytes", "gzip bytes"], listing)
    )
    if not settings.browser:
        section.rows.append(
            Row(
                "widget: bytes before any click", "not measured (smoke: no browser)", "—", "—", None
            )
        )
        return section
    if not os.access(CHROMIUM, os.X_OK):
        section.rows.append(
            Row(
                "widget: bytes before any click",
                f"not measured: {CHROMIUM} missing",
                "—",
                "—",
                None,
            )
        )
        return section
    try:
        seen = browser_before_click(settings)
    except Exception as exc:
        section.rows.append(
            Row(
                "widget: bytes before any click", f"not measured: {type(exc).__name__}: {exc}"[:200]
            )
        )
        return section
    widget = [t for t in seen["before"] if t["path"].startswith("/oneinbox/")]
    widget_bytes = sum(t["body"] + t["headers"] for t in widget)
    livekit = [t for t in seen["before"] if CHUNK.search(t["path"].split("?")[0])]
    section.rows.append(
        Row(
            "widget: bytes a page downloads before any click (Chromium, widget requests)",
            f"{_kb(widget_bytes)} in {len(widget)} request(s)",
            "—",
            "≤ 6 KB gzip loader",
            bool(widget) and all(t["body"] <= LOADER_BUDGET for t in widget),
        )
    )
    section.rows.append(
        Row(
            "widget: LiveKit bytes before a click",
            f"{sum(t['body'] for t in livekit):,} bytes",
            "—",
            "0",
            not livekit,
        )
    )
    rows = [
        [t["path"], str(t["status"]), t["encoding"], f"{t['body']:,}", f"{t['headers']:,}"]
        for t in seen["before"]
    ]
    chunk_seen = seen["chunk"]
    rows.append(
        [
            chunk_seen["path"] + " (after the click)",
            str(chunk_seen["status"]),
            chunk_seen["encoding"],
            f"{chunk_seen['body']:,}",
            f"{chunk_seen['headers']:,}",
        ]
    )
    section.details.append(
        "Chromium (headless, Debian's) loads a host page with `script_tag()`, waits for "
        "network idle and 2.5 s more, then clicks *Talk to AI*. Every request it made:\n\n"
        + table(["request", "status", "encoding", "body bytes", "header bytes"], rows)
    )
    return section
