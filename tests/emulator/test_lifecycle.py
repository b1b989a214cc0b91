"""A call's life as OneInbox lives it, over real HTTP and the real voice server: statuses for
every ending, the join timeout, the record written after the end, and webhooks delivered to
a loopback receiver (retried, given up, never blocking a call, stopped at shutdown)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator, build_emulator
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings
from oneinbox_emulator.webhooks import WebhookOptions

from .lkpeer import PyParticipant
from .receiver import Receiver, receiving
from .support import LiveEmulator, auth, serving, until

pytestmark = pytest.mark.anyio

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RECORD_FIELDS = {
    "id", "agent_id", "type", "status", "room_name", "variables", "metadata", "started_at",
    "ended_at", "duration_seconds", "end_reason", "messages", "recording_url", "analysis",
    "ai_summary", "latency", "credits_used", "cost_cents", "created_at",
}  # fmt: skip
WRITTEN_LATER = ("analysis", "ai_summary", "latency", "credits_used", "cost_cents")


def emulator_for(
    receiver: Receiver | None,
    *,
    join_timeout: float | None = None,
    record_delay: float = 0.0,
    tries: int = 3,
    first_retry: float = 0.05,
    attempt_timeout: float = 2.0,
    **agent: Any,
) -> Emulator:
    webhooks = None
    if receiver is not None:
        webhooks = WebhookOptions(
            url=receiver.url, tries=tries, first_retry=first_retry, timeout=attempt_timeout
        )
    return Emulator(
        agents={"agt_demo": AgentSettings(**agent)},
        voice=VoiceOptions(
            departure_timeout=0.5, timings=SessionTimings(connect_timeout=5.0, leave_grace=0.2)
        ),
        join_timeout=join_timeout,
        record_delay=record_delay,
        webhooks=webhooks,
    )


def from_the_emulator(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "oneinbox_emulator" in code.co_filename


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as receiver:
        yield receiver


async def join(live: LiveEmulator, call: dict[str, Any]) -> PyParticipant:
    me = PyParticipant(call["server_url"], call["participant_token"], single_pc=True)
    await me.join()
    async with asyncio.timeout(8):
        await me.connected.wait()
    return me


async def written(live: LiveEmulator, call_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The record once it has been written (its summary appears last)."""
    deadline = time.monotonic() + timeout
    while True:
        record = await live.record(call_id)
        if record["ai_summary"] is not None:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"record not written within {timeout} s: {record}")
        await asyncio.sleep(0.05)


# -- every ending ------------------------------------------------------------------------------

ENDINGS: dict[str, dict[str, Any]] = {
    "user_hangup": {},
    "api_stop": {},
    "agent_hangup": {"max_turns": 0},  # greets, says goodbye, hangs up
    "max_duration": {"max_duration": 0.8},
    "connection_lost": {},  # the socket drops without a leave; nobody comes back in 0.5 s
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_each_ending_completes_the_call_and_is_announced(
    receiver: Receiver, ending: str
) -> None:
    emulator = emulator_for(receiver, join_timeout=5.0, **ENDINGS[ending])
    async with serving(emulator) as live:
        call = await live.create_call("Ada", metadata={"crm": "42"})
        assert (await live.record(call["id"]))["status"] == "initiated"
        me = await join(live, call)
        try:
            # The agent greets once the server has the caller's media: the call is live.
            await until(lambda: me.heard.transcripts)
            record = await live.record(call["id"])
            assert record["status"] == "in_progress" and ISO_UTC.match(record["started_at"])
            if ending == "user_hangup":
                await me.leave()
            elif ending == "api_stop":
                stopped = await live.client.post(f"/v1/calls/{call['id']}/stop", headers=auth())
                assert stopped.json()["status"] == "completed"
            elif ending == "connection_lost":
                assert me.ws is not None
                await me.ws.close()
            record = await written(live, call["id"], timeout=10)
        finally:
            await me.close()
        assert record["status"] == "completed" and record["end_reason"] == ending
        assert record["duration_seconds"] > 0
        await until(lambda: "call.analyzed" in receiver.events)

    assert receiver.events == ["call.started", "call.ended", "transcript.final", "call.analyzed"]
    started, ended = receiver.delivered("call.started"), receiver.delivered("call.ended")
    assert started["call_id"] == ended["call_id"] == call["id"]
    assert started["agent_id"] == "agt_demo" and started["status"] == "in_progress"
    assert started["metadata"] == {"crm": "42"}
    assert ended["status"] == "completed" and ended["end_reason"] == ending
    assert ended["duration_seconds"] == record["duration_seconds"]
    assert all(ISO_UTC.match(d.body["created_at"]) for d in receiver.deliveries)
    transcript = receiver.delivered("transcript.final")["messages"]
    assert transcript == record["messages"] and transcript[0]["role"] == "agent"
    analyzed = receiver.delivered("call.analyzed")
    assert analyzed["ai_summary"] == record["ai_summary"]
    assert analyzed["credits_used"] == record["credits_used"]


async def test_a_caller_who_never_joins_fails_the_call_at_the_join_timeout(
    receiver: Receiver,
) -> None:
    emulator = emulator_for(receiver, join_timeout=0.4)
    async with serving(emulator) as live:
        created = time.monotonic()
        call = await live.create_call()
        await until(lambda: emulator.registry.get(call["id"]).status != "initiated", 3)
        waited = time.monotonic() - created
        record = await written(live, call["id"])
        await until(lambda: "call.analyzed" in receiver.events)
        # A late caller finds the room gone.
        validate = await live.client.get(
            "/rtc/validate", params={"access_token": call["participant_token"]}
        )
    assert 0.35 < waited < 1.5
    assert record["status"] == "failed" and record["end_reason"] == "join_timeout"
    assert record["started_at"] is None and record["duration_seconds"] == 0
    assert record["messages"] == [] and record["credits_used"] == 0
    assert "never joined" in record["ai_summary"]
    # No conversation, so no transcript event.
    assert receiver.events == ["call.failed", "call.analyzed"]
    failed = receiver.delivered("call.failed")
    assert failed["status"] == "failed" and failed["end_reason"] == "join_timeout"
    assert failed["duration_seconds"] == 0
    assert validate.status_code == 404 and "the call has ended" in validate.text


async def test_the_join_timeout_spares_a_caller_who_joined(receiver: Receiver) -> None:
    emulator = emulator_for(receiver, join_timeout=1.0)
    async with serving(emulator) as live:
        created = time.monotonic()
        call = await live.create_call()
        assert emulator.lifecycle.pending_timers == 1
        me = await join(live, call)
        try:
            await until(lambda: emulator.registry.get(call["id"]).status == "in_progress")
            assert emulator.lifecycle.pending_timers == 0  # the join timer is gone
            await asyncio.sleep(max(0.0, created + 1.3 - time.monotonic()))
            assert (await live.record(call["id"]))["status"] == "in_progress"
        finally:
            await me.close()


async def test_a_joined_caller_whose_media_never_connects_fails_the_call() -> None:
    """The signalling join alone is not joining: without media the call is not live."""
    emulator = emulator_for(None, join_timeout=0.6)
    async with serving(emulator) as live:
        call = await live.create_call()
        from websockets.asyncio.client import connect

        url = f"{call['server_url']}/rtc?access_token={call['participant_token']}"
        async with connect(url) as ws:
            await ws.recv()  # the join response; we never answer the subscriber offer
            await until(lambda: emulator.registry.get(call["id"]).ended, 3)
        record = await live.record(call["id"])
    assert record["status"] == "failed" and record["end_reason"] == "join_timeout"


# -- the record ------------------------------------------------------------------------------


async def test_the_record_is_complete_and_written_a_moment_after_the_end(
    receiver: Receiver,
) -> None:
    emulator = emulator_for(receiver, record_delay=0.6, thinking_seconds=0.05)
    async with serving(emulator) as live:
        call = await live.create_call("Ada", metadata={"crm": "42"})
        me = await join(live, call)
        try:
            await until(lambda: "listening" in me.heard.agent_states)
            await me.leave()
            await until(lambda: emulator.registry.get(call["id"]).ended)
            ended_at = time.monotonic()
            just_ended = await live.record(call["id"])
            record = await written(live, call["id"])
            written_after = time.monotonic() - ended_at
            await until(lambda: "call.analyzed" in receiver.events)
        finally:
            await me.close()

    assert set(just_ended) == RECORD_FIELDS
    assert just_ended["status"] == "completed" and just_ended["ended_at"]
    assert just_ended["messages"] == []
    assert all(just_ended[name] is None for name in WRITTEN_LATER)
    assert 0.5 < written_after < 2.5

    assert set(record) == RECORD_FIELDS
    assert record["id"] == call["id"] and record["type"] == "web"
    assert record["agent_id"] == "agt_demo" and record["room_name"] == call["room_name"]
    assert record["variables"] == {"customer_name": "Ada"} and record["metadata"] == {"crm": "42"}
    assert record["end_reason"] == "user_hangup" and record["recording_url"] is None
    for stamp in ("created_at", "started_at", "ended_at"):
        assert ISO_UTC.match(record[stamp]), stamp
    created, started, ended = (
        datetime.fromisoformat(record[k]) for k in ("created_at", "started_at", "ended_at")
    )
    assert created <= started <= ended
    assert record["messages"][0] == {
        "role": "agent",
        "content": "Hi Ada! This is the OneInbox demo agent. Say something.",
        "time": record["messages"][0]["time"],
    }
    duration = record["duration_seconds"]
    assert 0 < duration < 15
    assert record["credits_used"] == round(duration / 60, 4)
    assert record["cost_cents"] == round(record["credits_used"] * 10, 2)
    assert record["analysis"] == {
        "successful": False,  # the caller never spoke
        "user_turns": 0,
        "agent_turns": 1,
        "outcome": "user_hangup",
    }
    assert "Ada did not speak" in record["ai_summary"] and "hung up" in record["ai_summary"]

    latency = record["latency"]
    assert set(latency) == {"llm_ttft", "tts_ttfb", "eou_delay", "connect"}
    assert latency["tts_ttfb"]["samples"] == 1  # the greeting
    assert set(latency["tts_ttfb"]) == {"avg_ms", "p50_ms", "min_ms", "max_ms", "samples"}
    assert latency["llm_ttft"] == {
        "avg_ms": None, "p50_ms": None, "min_ms": None, "max_ms": None, "samples": 0,
    }  # fmt: skip
    connect = latency["connect"]
    assert set(connect) == {
        "setup_ms", "dispatch_to_answer_ms", "answer_to_active_ms", "active_to_greeting_ms"
    }  # fmt: skip
    # Plausible: each step measured, and the steps fit in the time from creation to greeting.
    assert all(isinstance(v, float) and 0 <= v < 5000 for v in connect.values()), connect
    assert connect["setup_ms"] < 200 and connect["answer_to_active_ms"] > 1

    # The transcript and the analysis were announced when the record was written, not before.
    ended_event = receiver.attempts("call.ended")[0].at
    assert receiver.attempts("transcript.final")[0].at - ended_event > 0.5


# -- webhook delivery ------------------------------------------------------------------------


async def test_a_failing_receiver_gets_the_event_again_until_it_takes_it(
    receiver: Receiver,
) -> None:
    receiver.failures = 2
    emulator = emulator_for(receiver, join_timeout=0.1, tries=4, first_retry=0.1)
    async with serving(emulator) as live:
        call = await live.create_call()
        await until(lambda: "call.analyzed" in receiver.events, 5)
    attempts = receiver.attempts("call.failed")
    assert [a.answered for a in attempts] == [500, 500, 200]
    # One delivery id for every attempt, so the receiver can tell a retry from a new event.
    assert len({a.headers["x-oneinbox-delivery"] for a in attempts}) == 1
    assert attempts[0].headers["content-type"] == "application/json"
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps  # 0.1 s, then twice that
    # In order within the call: analyzed only after failed went through.
    assert receiver.events == ["call.failed", "call.analyzed"]
    assert receiver.attempts("call.analyzed")[0].at > attempts[-1].at
    assert receiver.delivered("call.failed")["call_id"] == call["id"]
    assert [(o.event, o.delivered, o.attempts) for o in emulator.webhooks.outcomes] == [
        ("call.failed", True, 3),
        ("call.analyzed", True, 1),
    ]


async def test_delivery_gives_up_after_the_bound(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oneinbox_emulator.webhooks")
    receiver.failures = 1000
    receiver.failure_status = 503
    emulator = emulator_for(receiver, join_timeout=0.1, tries=3, first_retry=0.05)
    async with serving(emulator) as live:
        await live.create_call()
        assert emulator.webhooks is not None
        await until(lambda: len(emulator.webhooks.outcomes) == 2, 5)
        await asyncio.sleep(0.5)  # nothing more comes
    assert [a.event for a in receiver.deliveries] == ["call.failed"] * 3 + ["call.analyzed"] * 3
    assert [(o.delivered, o.attempts, o.last_status) for o in emulator.webhooks.outcomes] == [
        (False, 3, 503),
        (False, 3, 503),
    ]
    logged = caplog.text
    assert "call.failed" in logged and "gave up after 3 attempts" in logged
    assert "127.0.0.1" in logged and "not-for-logs" not in logged  # the query stays out


async def test_an_unreachable_or_silent_receiver_is_retried_within_bounds(
    receiver: Receiver, closed_port: int
) -> None:
    unreachable = WebhookOptions(
        url=f"http://127.0.0.1:{closed_port}/hook", tries=3, first_retry=0.05
    )
    receiver.delay = 3.0  # longer than an attempt may take
    silent = WebhookOptions(url=receiver.url, tries=2, first_retry=0.05, timeout=0.3)
    for options in (unreachable, silent):
        emulator = Emulator(join_timeout=0.05, record_delay=0.0, webhooks=options)
        async with serving(emulator) as live:
            await live.create_call()
            assert emulator.webhooks is not None
            started = time.monotonic()
            await until(lambda: len(emulator.webhooks.outcomes) == 2, 5)  # noqa: B023
            took = time.monotonic() - started
        outcomes = [(o.delivered, o.attempts, o.last_status) for o in emulator.webhooks.outcomes]
        assert outcomes == [(False, options.tries, None)] * 2
        # Two events, each: its tries, each bounded by the attempt timeout, plus the waits.
        assert took < 2 * (options.tries * options.timeout + sum(options.retry_delays())) + 1
    assert [a.event for a in receiver.deliveries] == ["call.failed"] * 2 + ["call.analyzed"] * 2


async def test_a_slow_receiver_never_holds_up_a_call(receiver: Receiver) -> None:
    receiver.delay = 3.0
    emulator = build_emulator(webhook_url=receiver.url, join_timeout=None, record_delay=0.0)
    async with serving(emulator) as live:
        call = await live.create_call()
        emulator.registry.mark_joined(call["id"])  # as if the caller connected: call.started
        await until(lambda: receiver.deliveries)  # the receiver is now sitting on it
        started = time.monotonic()
        stopped = await live.client.post(f"/v1/calls/{call['id']}/stop", headers=auth())
        took = time.monotonic() - started
        record = await live.record(call["id"])
    assert stopped.status_code == 200 and took < 0.5
    assert record["status"] == "completed" and record["ai_summary"] is not None


async def test_shutdown_cancels_pending_deliveries_and_timers(receiver: Receiver) -> None:
    receiver.delay = 30.0
    emulator = emulator_for(
        receiver, join_timeout=30, record_delay=30, tries=5, first_retry=10, attempt_timeout=20
    )
    before = asyncio.all_tasks()
    async with serving(emulator) as live:
        waiting = await live.create_call()  # a join timer
        ended = await live.create_call()
        emulator.registry.mark_joined(ended["id"])
        await live.client.post(f"/v1/calls/{ended['id']}/stop", headers=auth())  # a record timer
        await until(lambda: len(receiver.deliveries) == 1)  # call.started, held by the receiver
        assert emulator.webhooks is not None
        deliveries = list(emulator.webhooks._tasks)
        assert len(deliveries) == 2  # call.started in flight, call.ended queued behind it
        assert emulator.lifecycle.pending_timers == 2
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    assert took < 3, "shutdown waited for a delivery"
    assert all(task.cancelled() for task in deliveries)
    assert emulator.webhooks.pending == 0 and emulator.lifecycle.pending_timers == 0
    assert emulator.webhooks._client is None  # the HTTP client is closed
    # Only the receiver's own tasks may remain (it still sits on call.started).
    leftover = [t for t in asyncio.all_tasks() - before if from_the_emulator(t)]
    assert leftover == []
    assert emulator.registry.get(waiting["id"]).status == "initiated"  # no timer fired late
