"""The audit trail (one line per start, end, denial, failure; never a secret) and the hooks."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from oneinbox_asgi import CallEvent
from oneinbox_emulator.api import EmulatorAPI

from ..support import AGENT_ID, API_KEY, END, START, FakeClock, broker, client_for

pytestmark = pytest.mark.anyio


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        {"message": r.getMessage(), "level": r.levelname, **r.oneinbox}
        for r in caplog.records
        if hasattr(r, "oneinbox")
    ]


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(caplog.text.splitlines() + [repr(vars(r)) for r in caplog.records])


async def test_one_line_per_start_end_denial_and_failure_and_no_secrets(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="oneinbox_asgi")
    app = broker(http_client=upstream_client)
    secrets: list[str] = [API_KEY]
    async with client_for(app, "u1") as u1, client_for(app, "u2") as u2:
        started = (await u1.post(START, json={})).json()
        secrets += [started["participant_token"], started["end_token"]]
        at_cap = await u1.post(START, json={})
        ended = await u1.post(END, json={"end_token": started["end_token"]})
        oneinbox.misbehave(status=401, body=b'{"detail": "Invalid API key"}', times=1)
        failed = await u2.post(START, json={})
        stolen = await u2.post(END, json={"end_token": started["end_token"]})
        nobody = await u2.post(START, json={}, headers={"x-user": ""})
    assert [at_cap.status_code, ended.status_code, failed.status_code] == [429, 200, 502]
    assert [stolen.status_code, nobody.status_code] == [403, 401]

    lines = audit_lines(caplog)
    summary = [(line["message"].split(" outcome=")[0], line["outcome"]) for line in lines]
    assert summary == [
        ("call started", "started"),
        ("call denied", "too_many_calls"),
        ("call ended", "ended"),
        ("call failed", "upstream_auth"),
        ("call end denied", "forbidden"),
        ("call denied", "unauthorized"),
    ]
    first = lines[0]
    assert first["limit_key"] == "id:u1"
    assert first["call_id"] == started["call_id"]
    assert first["agent_id"] == AGENT_ID
    assert isinstance(first["latency_ms"], float)
    expected = f"limit_key=id:u1 call_id={started['call_id']} agent_id={AGENT_ID}"
    assert expected in first["message"]
    assert lines[2]["call_id"] == started["call_id"] and lines[2]["limit_key"] == "id:u1"
    assert lines[3]["level"] == "WARNING" and lines[3]["limit_key"] == "id:u2"
    assert lines[5]["limit_key"] == "ip:127.0.0.1"  # not signed in: the address is all we know

    logged = everything_logged(caplog)
    for secret in secrets:
        assert secret not in logged
    for response in (at_cap, failed, stolen, nobody):
        assert API_KEY not in response.text


async def test_hostile_ids_cannot_forge_log_fields(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oneinbox_asgi")
    app = broker(http_client=upstream_client)
    async with client_for(app, "evil outcome=started\nforged") as client:
        await client.post(START, json={})
    (line,) = audit_lines(caplog)
    assert "\n" not in line["message"]
    assert 'limit_key="id:evil outcome=started\\nforged"' in line["message"]


async def test_hooks_hear_of_starts_and_ends(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    heard: list[tuple[str, CallEvent]] = []
    clock = FakeClock()

    async def started(event: CallEvent) -> None:
        heard.append(("started", event))

    def ended(event: CallEvent) -> None:  # sync hooks are accepted too
        heard.append(("ended", event))

    from oneinbox_asgi.guards import MemoryStore

    app = broker(
        http_client=upstream_client,
        on_call_started=started,
        on_call_ended=ended,
        store=MemoryStore(clock=clock),
    )
    async with client_for(app, "u1") as client:
        answer = (await client.post(START, json={})).json()
        clock.advance(42)
        await client.post(END, json={"end_token": answer["end_token"]})
        await client.post(END, json={"end_token": answer["end_token"]})  # no second event
    call_id = answer["call_id"]
    # caller is what authorize returned; the limits' key has its own name
    begun = clock.now - 42
    assert heard == [
        (
            "started",
            CallEvent(
                call_id=call_id,
                agent_id=AGENT_ID,
                caller="u1",
                limit_key="id:u1",
                started_at=begun,
            ),
        ),
        (
            "ended",
            CallEvent(
                call_id=call_id,
                agent_id=AGENT_ID,
                caller="u1",
                duration=42.0,
                limit_key="id:u1",
                started_at=begun,
                ended_at=clock.now,
                ended_by="end_call",
            ),
        ),
    ]


async def test_a_broken_hook_is_logged_and_the_call_goes_on(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: CallEvent) -> None:
        raise RuntimeError("metrics backend down")

    app = broker(http_client=upstream_client, on_call_started=broken, on_call_ended=broken)
    async with client_for(app, "u1") as client:
        started = await client.post(START, json={})
        ended = await client.post(END, json={"end_token": started.json()["end_token"]})
    assert started.status_code == 201 and ended.status_code == 200
    assert "the on_call_started hook raised" in caplog.text
    assert "the on_call_ended hook raised" in caplog.text


async def test_a_cross_site_refusal_is_logged_with_the_address(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oneinbox_asgi")
    seen_bodies: list[Any] = []

    def authorize(request: Any) -> str:
        seen_bodies.append(dict(request.body))
        return "u1"

    app = broker(http_client=upstream_client, authorize=authorize)
    async with client_for(app, client=("192.0.2.9", 4000)) as client:
        token = (await client.post(START, json={})).json()["end_token"]
        refused = await client.post(START, json={}, headers={"Sec-Fetch-Site": "cross-site"})
        await client.post(END, json={"end_token": token})
    assert refused.status_code == 403
    lines = audit_lines(caplog)
    assert [(line["outcome"], line["limit_key"]) for line in lines] == [
        ("started", "id:u1"),
        ("cross_site", "ip:192.0.2.9"),
        ("ended", "id:u1"),
    ]
    assert seen_bodies == [{}, {}]  # the end-call's authorize never sees the handle
