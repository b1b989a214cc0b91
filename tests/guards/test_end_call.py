"""POST /oneinbox/end-call: only the caller who started a call ends it; idempotent."""

from __future__ import annotations

import anyio
import httpx
import pytest

from oneinbox_asgi.guards import MemoryStore
from oneinbox_asgi.guards.handles import HandleSigner
from oneinbox_emulator.api import EmulatorAPI

from ..apps import starlette_app
from ..support import END, START, FakeClock, StoreFactory, broker, client_for, error_code

pytestmark = pytest.mark.anyio


def stops(oneinbox: EmulatorAPI) -> list[str]:
    return [r.path for r in oneinbox.received if r.path.endswith("/stop")]


async def test_end_call_stops_the_call_upstream_and_is_idempotent(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        first = await client.post(END, json={"end_token": started["end_token"]})
        second = await client.post(END, json={"end_token": started["end_token"]})
    assert first.status_code == 200 and first.json() == {"ended": True}
    assert first.headers["cache-control"] == "no-store"
    assert second.status_code == 200 and second.json() == {"ended": True}
    call = oneinbox.registry.get(started["call_id"])
    assert call is not None and call.status == "completed" and call.end_reason == "api_stop"
    # the second end-call is answered from the store: no second stop with our key
    assert stops(oneinbox) == [f"/v1/calls/{started['call_id']}/stop"]


async def test_a_replayed_handle_reaches_oneinbox_at_most_once(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    """0.1 sent one stop per replay: a script could get the key rate-limited at OneInbox.
    Concurrent replays, on two replicas sharing the store: one stop in flight, one in all."""
    store = make_store()
    replica_a = broker(http_client=upstream_client, store=store)
    replica_b = broker(http_client=upstream_client, store=store)
    async with client_for(replica_a, "u1") as a, client_for(replica_b, "u1") as b:
        token = (await a.post(START, json={})).json()["end_token"]
        oneinbox.misbehave(delay=0.2)  # the stop is slow: replays arrive while it is in flight
        statuses: list[int] = []

        async def replay(client: httpx.AsyncClient) -> None:
            statuses.append((await client.post(END, json={"end_token": token})).status_code)

        async with anyio.create_task_group() as group:
            for client in [a, b] * 10:
                group.start_soon(replay, client)
        later = [(await b.post(END, json={"end_token": token})).status_code for _ in range(5)]
    assert len(stops(oneinbox)) == 1
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}
    assert later == [200] * 5


async def test_a_failed_stop_may_be_retried(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        oneinbox.misbehave(status=500, body=b"{}", times=1)
        failed = await client.post(END, json={"end_token": token})
        retried = await client.post(END, json={"end_token": token})
    assert failed.status_code == 502 and retried.status_code == 200
    assert len(stops(oneinbox)) == 2


async def test_start_call_answers_the_fixed_shape(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        response = await client.post(START, json={})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"call_id", "server_url", "participant_token", "end_token"}
    assert "u1" not in body["end_token"]  # the handle names the caller only by a keyed digest


async def test_another_callers_handle_is_refused_and_nothing_goes_upstream(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "alice") as alice, client_for(app, "mallory") as mallory:
        token = (await alice.post(START, json={})).json()["end_token"]
        stolen = await mallory.post(END, json={"end_token": token})
        assert stolen.status_code == 403 and error_code(stolen) == "forbidden"
        assert stops(oneinbox) == []
        assert (await alice.post(START, json={})).status_code == 429  # alice's slot still held
        assert (await alice.post(END, json={"end_token": token})).status_code == 200


async def test_session_users_end_their_own_calls_only(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    """The same, with the Starlette session cookie as the proof of who is calling."""
    app = starlette_app(http_client=upstream_client, max_concurrent_calls=1)

    def session_client() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with session_client() as ada, session_client() as eve, session_client() as anon:
        await ada.get("/login", params={"id": "ada"})
        await eve.get("/login", params={"id": "eve"})
        token = (await ada.post(START, json={})).json()["end_token"]
        by_eve = await eve.post(END, json={"end_token": token})
        by_nobody = await anon.post(END, json={"end_token": token})
        by_ada = await ada.post(END, json={"end_token": token})
    assert by_eve.status_code == 403 and error_code(by_eve) == "forbidden"
    assert by_nobody.status_code == 401 and error_code(by_nobody) == "unauthorized"
    assert by_ada.status_code == 200
    assert len(stops(oneinbox)) == 1


def tampered(token: str) -> str:
    body, _, signature = token.rpartition(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{body}.{flipped}{signature[1:]}"


async def test_forged_and_foreign_handles_are_404(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    other_key = HandleSigner("oi_sk_some_other_key", clock=FakeClock())
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        foreign = other_key.issue(
            "id:u1", call_id="call_x", agent_id="agt_demo", slot="s", expires_ms=2**53
        )
        for forged in [tampered(token), "not-a-handle", "a" * 5000, foreign, token + "x"]:
            response = await client.post(END, json={"end_token": forged})
            assert response.status_code == 404, forged
            assert error_code(response) == "not_found"
    assert stops(oneinbox) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{}", "application/json", 400, "bad_request"),
        (b'{"end_token": 7}', "application/json", 400, "bad_request"),
        (b'{"end_token": ""}', "application/json", 404, "not_found"),
        (b'{"end_token": "x", "call_id": "call_1"}', "application/json", 400, "bad_request"),
        (b"[]", "application/json", 400, "bad_request"),
        (b"end_token=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"end_token": "' + b"x" * 20_000 + b'"}', "application/json", 413, "payload_too_large"),
    ],
)
async def test_bad_end_call_bodies(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        response = await client.post(END, content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert error_code(response) == code
    assert stops(oneinbox) == []


async def test_end_call_wants_post(upstream_client: httpx.AsyncClient) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        response = await client.get(END)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert error_code(response) == "method_not_allowed"


async def test_a_failed_stop_keeps_the_slot_and_can_be_retried(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, rate_limit=None)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        oneinbox.misbehave(status=503, times=1)
        failed = await client.post(END, json={"end_token": token})
        assert failed.status_code == 502 and error_code(failed) == "upstream_error"
        assert (await client.post(START, json={})).status_code == 429  # maybe still running
        assert (await client.post(END, json={"end_token": token})).status_code == 200
        assert (await client.post(START, json={})).status_code == 201


async def test_an_unknown_call_upstream_still_ends_fine(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    """OneInbox forgot the call (404 on stop): it is over either way, the slot is freed."""
    app = broker(http_client=upstream_client, rate_limit=None)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        oneinbox.misbehave(status=404, times=1)
        assert (await client.post(END, json={"end_token": token})).status_code == 200
        assert (await client.post(START, json={})).status_code == 201


async def test_a_handle_from_one_replica_ends_the_call_on_another(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    """Two middlewares, same API key, each with its own store object (over one Redis)."""
    clock = FakeClock()
    replica_a = broker(http_client=upstream_client, store=make_store(clock=clock))
    replica_b = broker(http_client=upstream_client, store=make_store(clock=clock))
    async with client_for(replica_a, "u1") as a, client_for(replica_b, "u1") as b:
        token = (await a.post(START, json={})).json()["end_token"]
        assert (await b.post(END, json={"end_token": token})).status_code == 200
        assert len(stops(oneinbox)) == 1
        if not isinstance(replica_a.store, MemoryStore):  # one shared budget on Redis
            assert (await b.post(START, json={})).status_code == 201
            assert (await a.post(START, json={})).status_code == 429


async def test_a_handle_expires_with_the_lease(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    app = broker(http_client=upstream_client, max_call_seconds=60, store=MemoryStore(clock=clock))
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        clock.advance(59)
        assert (await client.post(END, json={"end_token": token})).status_code == 200
        token = (await client.post(START, json={})).json()["end_token"]
        clock.advance(60)
        expired = await client.post(END, json={"end_token": token})
    assert expired.status_code == 404 and error_code(expired) == "not_found"
    assert len(stops(oneinbox)) == 1


def test_handles_tolerate_a_little_clock_skew_between_replicas() -> None:
    ahead, behind = FakeClock(1_700_000_030.0), FakeClock(1_700_000_000.0)
    signer = HandleSigner("oi_sk_k", clock=ahead)
    expires_ms = int((ahead() + 900) * 1000)
    token = signer.issue(
        "id:u1", call_id="call_1", agent_id="agt", slot=None, expires_ms=expires_ms
    )
    handle = HandleSigner("oi_sk_k", clock=behind).open(token)
    assert handle.call_id == "call_1" and handle.slot is None


def _alternatives(token: str) -> list[str]:
    """Other spellings of the same bytes, and small edits a lenient decoder would accept."""
    body, _, signature = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    # 43 base64 characters carry 258 bits for 256: the last one has 2 spare bits.
    spare_bits = [alphabet[(last & ~3) | bits] for bits in range(4)]
    return [
        *(f"{body}.{signature[:-1]}{c}" for c in spare_bits if c != signature[-1]),
        token + "=",
        token + "==",
        token + "!!",
        token + "é",
        token[:-1] + "é",
        " " + token,
        token + "\n",
        f"{body}=.{signature}",
        token.replace("oieh1.", "OIEH1."),
    ]


async def test_a_handle_is_accepted_only_in_its_canonical_form(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        for variant in _alternatives(token):
            response = await client.post(END, json={"end_token": variant})
            assert response.status_code == 404, variant
            assert error_code(response) == "not_found"
        assert stops(oneinbox) == []
        assert (await client.post(END, json={"end_token": token})).status_code == 200
    assert len(stops(oneinbox)) == 1


@pytest.mark.parametrize("lease", [0.25, 1.5, 60.0])
async def test_a_handle_lives_exactly_as_long_as_its_slot(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, lease: float
) -> None:
    """Not a moment less (0.1 rounded the issue time down: up to a second early, and dead
    on arrival under 1 s), and not a moment more."""
    clock = FakeClock(1_700_000_000.9)
    app = broker(
        http_client=upstream_client, max_call_seconds=lease, store=MemoryStore(clock=clock)
    )
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        clock.advance(lease - 0.001)
        assert (await client.post(END, json={"end_token": token})).status_code == 200
        token = (await client.post(START, json={})).json()["end_token"]
        clock.advance(lease)
        expired = await client.post(END, json={"end_token": token})
        assert expired.status_code == 404 and error_code(expired) == "not_found"
        # and the slot's lease ended with it: the caller can start again at once
        assert (await client.post(START, json={})).status_code == 201
