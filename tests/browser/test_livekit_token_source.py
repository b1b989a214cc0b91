"""Issue 14: start-call is a LiveKit token endpoint. The stock livekit-client (2.23, the
widget's pinned npm copy) uses ``TokenSource.endpoint`` against the broker, joins a ``Room``
with what it got, hears the agent and leaves; a request naming the room or the participant
is refused with 400, which the token source throws. From the broker's own origin (cookies
go with a same-origin fetch) and from the trusted sibling origin (``credentials:
"include"``, as a LiveKit app on ``shop.example.com`` would pass it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .support import (
    SALES_GREETING,
    VoiceStack,
    login_at,
    wait_until,
)

pytestmark = pytest.mark.browser

# livekit-client's own API only: what a LiveKit React app's `useSession` does with the same
# token source (fetch, then connect), plus a log of what the room saw.
CALL = """async ({url, endpointOptions, fetchOptions}) => {
  const LK = window.LivekitClient;
  const source = LK.TokenSource.endpoint(url, endpointOptions);
  const details = await source.fetch(fetchOptions);
  const room = new LK.Room();
  const log = (window.__log = []);
  room.on(LK.RoomEvent.TrackSubscribed, (track, pub, who) => {
    document.body.appendChild(track.attach());
    log.push(["subscribed", who.identity, track.kind]);
  });
  room.on(LK.RoomEvent.TranscriptionReceived, (segments, who) =>
    segments.forEach((s) => log.push(["transcription", who && who.identity, s.text, s.final])));
  room.on(LK.RoomEvent.Disconnected, (reason) => log.push(["disconnected", reason]));
  window.__room = room;
  window.__source = source;
  await room.connect(details.serverUrl, details.participantToken);
  await room.localParticipant.setMicrophoneEnabled(true);
  return {serverUrl: details.serverUrl, token: details.participantToken};
}"""

REFUSED = """async ({url, endpointOptions, fetchOptions}) => {
  const source = window.LivekitClient.TokenSource.endpoint(url, endpointOptions);
  try {
    await source.fetch(fetchOptions);
    return "fetched";
  } catch (e) {
    return e.message;
  }
}"""


def open_livekit_page(stack: VoiceStack, context: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """A page with stock livekit-client on ``where``, signed in at the broker as Grace;
    the endpoint options a LiveKit app there would pass."""
    page = context.new_page()
    login_at(page, stack.broker, "Grace")
    if where == "same-origin":
        page.goto(stack.broker + "/livekit")
        options: dict[str, Any] = {"url": "/oneinbox/start-call", "endpointOptions": {}}
    else:
        page.goto(stack.sibling + "/livekit")
        options = {
            "url": stack.broker + "/oneinbox/start-call",
            "endpointOptions": {"credentials": "include"},
        }
    if not page.evaluate("() => !!(window.LivekitClient && window.LivekitClient.TokenSource)"):
        pytest.fail("livekit-client is not installed (run `npm ci` in widget/)")
    return page, options


def log(page: Any, kind: str) -> list[list[Any]]:
    return [entry for entry in page.evaluate("window.__log") if entry[0] == kind]


@pytest.mark.parametrize("where", ["same-origin", "sibling"])
def test_livekit_token_source_endpoint_starts_a_call_with_the_named_agent(
    fresh_voice_stack: VoiceStack, context: Any, where: str
) -> None:
    stack = fresh_voice_stack
    page, options = open_livekit_page(stack, context, where)
    before = len(stack.calls())

    joined = page.evaluate(CALL, {**options, "fetchOptions": {"agentName": "sales"}})
    assert joined["serverUrl"] == stack.emulator.server_url

    # What livekit-client sent: LiveKit's standard request, snake_case.
    post = stack.to("start-call")[-1]
    assert json.loads(post.body) == {"room_config": {"agents": [{"agent_name": "sales"}]}}
    assert post.status == 201
    calls = stack.calls()
    assert len(calls) == before + 1
    call = calls[0]
    assert call.agent_id == "agt_sales"  # picked by room_config.agents[0].agent_name
    assert call.variables["customer_name"] == "Grace"  # the server's hook, as ever

    # The agent's audio track is subscribed, and its greeting (by name) is transcribed.
    wait_until(lambda: ["subscribed", "agent", "audio"] in log(page, "subscribed"))
    greeting = SALES_GREETING.format(customer_name=" Grace")
    wait_until(lambda: any(e[2] == greeting and e[3] for e in log(page, "transcription")))

    page.evaluate("window.__room.disconnect()")
    wait_until(lambda: stack.emulator.registry.get(call.id).ended)
    assert stack.emulator.registry.get(call.id).end_reason == "user_hangup"

    # The token source caches its answer (docs/livekit-clients.md): the same options give
    # the same token, with no new call; `force` asks start-call again, and the caller's one
    # slot (max_concurrent_calls=1, never freed by an end-call) is freed by reconciliation.
    again = """([options, force]) => window.__source.fetch(options, force)
      .then(d => d.participantToken, e => e.message)"""
    cached = page.evaluate(again, [{"agentName": "sales"}, False])
    assert cached == joined["token"]
    assert len(stack.calls()) == before + 1
    forced = page.evaluate(again, [{"agentName": "sales"}, True])
    assert forced != cached and forced.count(".") == 2, forced
    assert len(stack.calls()) == before + 2


@pytest.mark.parametrize("where", ["same-origin", "sibling"])
def test_livekit_token_source_naming_the_room_or_the_participant_is_refused(
    fresh_voice_stack: VoiceStack, context: Any, where: str
) -> None:
    stack = fresh_voice_stack
    page, options = open_livekit_page(stack, context, where)
    before = len(stack.calls())
    for fetch_options, field in [
        ({"agentName": "sales", "roomName": "someone-elses-room"}, "room_name"),
        ({"participantIdentity": "admin"}, "participant_identity"),
        ({"agentName": "sales", "agentMetadata": "{}"}, "room_config"),
    ]:
        message = page.evaluate(REFUSED, {**options, "fetchOptions": fetch_options})
        assert "received 400" in message, message
        assert "bad_request" in message and field in message, message
    # Another agent than the middleware's `agents` names: refused too.
    message = page.evaluate(REFUSED, {**options, "fetchOptions": {"agentName": "agt_demo"}})
    assert "received 400" in message, message
    assert len(stack.calls()) == before
    assert [e.status for e in stack.to("start-call")[-4:]] == [400] * 4
    if where == "sibling":
        # A bearer header across origins: the preflight allows only content-type, so the
        # browser sends nothing (docs/livekit-clients.md: there, the cookie it is).
        sent = len(stack.to("start-call"))
        with_bearer = {
            **options,
            "endpointOptions": {**options["endpointOptions"], "headers": {"Authorization": "x"}},
            "fetchOptions": {"agentName": "sales"},
        }
        assert page.evaluate(REFUSED, with_bearer) == "Failed to fetch"
        assert len(stack.to("start-call")) == sent
        assert len(stack.calls()) == before
