"""start-call as LiveKit's standard token endpoint: the request every LiveKit client SDK's
endpoint token source sends (snake_case, as livekit-client's ``TokenSourceEndpoint``
writes it with ``useProtoFieldName``) picks an agent by name; what the server decides is
refused with 4xx, never passed to OneInbox."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from oneinbox_emulator.api import EmulatorAPI

from .apps import starlette_app
from .support import START, error_code, logged_in

pytestmark = pytest.mark.anyio

AGENTS = {"sales": "agt_sales", "support": "agt_demo"}


@pytest.mark.parametrize(
    ("body", "agent_id"),
    [
        ({}, "agt_demo"),
        ({"room_config": {"agents": [{"agent_name": "sales"}]}}, "agt_sales"),
        ({"room_config": {"agents": [{"agentName": "sales"}]}}, "agt_sales"),
        ({"room_config": {"agents": []}}, "agt_demo"),
        ({"room_config": {}}, "agt_demo"),
        ({"agent": "sales", "room_config": {"agents": [{"agent_name": "sales"}]}}, "agt_sales"),
    ],
    ids=["nothing", "agent_name", "agentName", "no agents", "empty config", "both agree"],
)
async def test_livekits_request_picks_an_agent_by_name(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, body: dict[str, Any], agent_id: str
) -> None:
    app = starlette_app(http_client=upstream_client, agent_id="agt_demo", agents=AGENTS)
    async with logged_in(app) as client:
        response = await client.post(START, json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert {"server_url", "participant_token"} <= set(answer)  # TokenSourceResponse's fields
    call = oneinbox.registry.get(answer["call_id"])
    assert call is not None and call.agent_id == agent_id


@pytest.mark.parametrize(
    "body",
    [
        {"room_name": "someone-elses-room"},
        {"participant_identity": "admin"},
        {"participant_name": "Grace"},
        {"participant_metadata": "{}"},
        {"participant_attributes": {"role": "admin"}},
        {"room_config": {"agents": [{"agent_name": "sales", "metadata": "x"}]}},
        {"room_config": {"agents": [{"agent_name": "sales", "deployment": "prod"}]}},
        {"room_config": {"agents": [{"agent_name": "sales"}, {"agent_name": "support"}]}},
        {"room_config": {"agents": [{"agent_name": "sales"}], "max_participants": 50}},
        {"room_config": {"emptyTimeout": 1}},
        {"room_config": "sales"},
        {"room_config": {"agents": [{"agent_name": "nobody"}]}},
        {"room_config": {"agents": [{"agent_name": 7}]}},
        {"agent": "support", "room_config": {"agents": [{"agent_name": "sales"}]}},
    ],
    ids=[
        "room_name",
        "participant_identity",
        "participant_name",
        "participant_metadata",
        "participant_attributes",
        "agent metadata",
        "deployment",
        "two agents",
        "other room_config",
        "camelCase other",
        "not an object",
        "unknown agent",
        "not a name",
        "disagree",
    ],
)
async def test_what_the_server_decides_is_refused_and_never_reaches_oneinbox(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    app = starlette_app(http_client=upstream_client, agent_id="agt_demo", agents=AGENTS)
    async with logged_in(app) as client:
        response = await client.post(START, json=body)
    assert response.status_code == 400, response.text
    assert error_code(response) == "bad_request"
    assert oneinbox.received == []
