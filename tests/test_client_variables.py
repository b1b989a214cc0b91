"""With ``client_variables`` left at its default, the browser may set no variable at all."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from oneinbox_emulator.api import EmulatorAPI

from .support import START, UNLIMITED, broker, client_for, error_code

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "variables",
    [
        {"customer_name": "Mallory"},  # the name a variables hook usually sets
        {"topic": "billing"},
        {"name": "x"},
        {"__proto__": "x"},
        {"": "x"},
        {"amount": 0},
        {"agent_id": "agt_other"},
    ],
)
async def test_by_default_every_browser_variable_is_refused(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, variables: dict[str, Any]
) -> None:
    app = broker(http_client=upstream_client, **UNLIMITED)  # client_variables not passed
    async with client_for(app, "u1") as client:
        response = await client.post(START, json={"variables": variables})
    assert response.status_code == 400, response.text
    assert error_code(response) == "bad_request"
    assert "may not be set" in response.json()["error"]["message"]
    assert oneinbox.received == []


async def test_by_default_no_variables_or_an_empty_object_is_fine(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, **UNLIMITED)
    async with client_for(app, "u1") as client:
        for body in ({}, {"variables": {}}):
            response = await client.post(START, json=body)
            assert response.status_code == 201, response.text
    assert [r.json().get("variables") for r in oneinbox.received] == [None, None]
