"""Debian's Chromium for the browser tests: where it is, how it starts, and what a
missing one means (a skip that says why, or a failure where ONEINBOX_REQUIRE_BROWSER=1)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
]


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("ONEINBOX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} and ONEINBOX_REQUIRE_BROWSER=1")
    pytest.skip(f"{reason}; set ONEINBOX_REQUIRE_BROWSER=1 to make this a failure")


@contextmanager
def launched(extra_args: list[str] | None = None) -> Iterator[Any]:
    """A headless Chromium through Playwright, closed after; skips (or fails) if missing."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *(extra_args or [])], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
