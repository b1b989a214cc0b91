"""Drive an example app in-process: sign in through its form, then start a call.

Also runnable as ``python -m tests.frameworks.example_flow examples.django_app:application``
(the Django example configures Django for its process, so its test runs it apart);
it prints the outcome as JSON.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import sys
from typing import Any

import httpx

from oneinbox_emulator.api import DEFAULT_API_KEY

from ..support import START

WIDGET_TAG = '<script src="/oneinbox/widget.js" async></script>'
CSRF = re.compile(r'name=csrfmiddlewaretoken value="([^"]+)"')


async def run(module_name: str, attribute: str) -> dict[str, Any]:
    """Sign in as "Ada" through the example's own form and start a call; report what happened."""
    module = importlib.import_module(module_name)
    app = getattr(module, attribute)
    transport = httpx.ASGITransport(app=app)
    outcome: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as visitor:
        outcome["visitor_start"] = (await visitor.post(START, json={})).status_code
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        first = await client.get("/")
        outcome["signed_out_page"] = first.status_code, "name=name" in first.text
        form = {"name": "Ada"}
        if token := CSRF.search(first.text):
            form["csrfmiddlewaretoken"] = token.group(1)
        signed_in = await client.post("/login", data=form)
        outcome["login"] = signed_in.status_code, signed_in.headers.get("location")
        page = await client.get("/")
        outcome["signed_in_page"] = "Hello, Ada" in page.text, WIDGET_TAG in page.text
        widget = await client.get("/oneinbox/widget.js")
        outcome["widget"] = widget.status_code
        started = await client.post(START, json={})
        outcome["start"] = started.status_code
        if started.status_code == 201:
            upstream: httpx.AsyncClient = module.oneinbox["http_client"]
            record = await upstream.get(
                f"https://api.oneinbox.ai/v1/calls/{started.json()['call_id']}",
                headers={"authorization": f"Bearer {DEFAULT_API_KEY}"},
            )
            outcome["variables"] = record.json()["variables"]
        signed_out = await client.post("/logout", data=form)
        outcome["logout"] = signed_out.status_code
        outcome["start_after_logout"] = (await client.post(START, json={})).status_code
    return outcome


if __name__ == "__main__":
    target_module, _, target_attribute = sys.argv[1].partition(":")
    print(json.dumps(asyncio.run(run(target_module, target_attribute))))
