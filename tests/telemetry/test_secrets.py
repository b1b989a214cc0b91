"""No secret in any exported span name, span or event attribute, metric attribute or JSON
log line: the API key, participant tokens, end handles, variable values, transcript text;
and no caller id in spans and metrics (the audit log keys its lines by caller, by design).
Fuzzed: each example is a whole call, started, spoken, ended twice, refused."""

from __future__ import annotations

import json
import logging
import string
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneinbox_asgi import CallRequest
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, client_for
from .support import Otel, every_attribute

WEBHOOK = "/oneinbox/webhook"
#: Long enough that a chance match inside an id or a number cannot happen.
secret_text = st.text(string.ascii_letters + string.digits, min_size=16, max_size=32)
spoken = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=16, max_size=60
)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        from oneinbox_asgi.logs import JSONFormatter

        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def one_call(
    api_key: str, caller: str, variable: str, browser_variable: str, words: str
) -> tuple[Otel, list[str], list[str], list[str]]:
    """A call through every path; (what was exported, the JSON log lines, the secrets,
    the caller's own secrets)."""
    oneinbox = EmulatorAPI(api_keys=[api_key])
    oneinbox.registry.agents.add("agt_demo")
    otel = Otel()
    handler = Lines()
    logger = logging.getLogger("oneinbox_asgi")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def variables(request: CallRequest) -> dict[str, Any]:
        return {"customer_name": variable}

    secrets = [api_key, variable, browser_variable, words]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=oneinbox)) as upstream:
            app = otel.broker(
                api_key=api_key,
                http_client=upstream,
                webhooks=True,
                variables=variables,
                client_variables=["topic"],
            )
            async with client_for(app, caller) as client:
                body = {"variables": {"topic": browser_variable}}
                started = (await client.post(START, json=body)).json()
                secrets += [started["participant_token"], started["end_token"]]
                assert (await client.post(START, json=body)).status_code == 429
                call_id = started["call_id"]
                oneinbox.registry.mark_joined(call_id)
                oneinbox.registry.add_message(call_id, "user", words)
                ended = await client.post(END, json={"end_token": started["end_token"]})
                assert ended.status_code == 200
                forged = await client.post(END, json={"end_token": started["end_token"] + "x"})
                assert forged.status_code == 404
                delivery = {"event": "call.analyzed", "call_id": call_id, "text": words}
                assert (await client.post(WEBHOOK, json=delivery)).status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        await otel.shut()
    return otel, handler.lines, secrets, [caller]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # Each kind its own prefix: hypothesis likes to make them all "000…".
    api_key=secret_text.map(lambda s: "oi_sk_" + s),
    caller=secret_text.map(lambda s: "caller-" + s),
    variable=spoken.map(lambda s: "var:" + s),
    browser_variable=secret_text.map(lambda s: "topic:" + s),
    words=spoken.map(lambda s: "said:" + s),
)
def test_no_secret_is_exported(
    api_key: str, caller: str, variable: str, browser_variable: str, words: str
) -> None:
    otel, lines, secrets, callers = anyio.run(
        one_call, api_key, caller, variable, browser_variable, words
    )
    exported = list(every_attribute(otel))
    assert any(where.startswith("span oneinbox end-call") for where, _ in exported)
    for where, text in exported:
        for secret in [*secrets, *callers]:
            assert secret not in text, (where, text)
    assert len(lines) >= 4  # started, refused, ended, forged, webhook
    for line in lines:
        decoded = json.dumps(json.loads(line), ensure_ascii=False)
        for secret in secrets:
            assert secret not in line and secret not in decoded, line
