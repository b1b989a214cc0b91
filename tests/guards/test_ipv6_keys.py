"""Callers keyed by address: IPv6 ones by their network (``ipv6_subnet``, default /64), so
rotating addresses within it buys nothing; IPv4 (and IPv4-mapped IPv6) per address."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from oneinbox_asgi import CallRequest, ConfigurationError, allow_anonymous
from oneinbox_asgi.client_address import ClientAddress, network_of
from oneinbox_asgi.guards import LimitStore
from oneinbox_asgi.guards.limits import limit_key
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, broker, client_for, error_code

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., LimitStore]


def anyone(request: CallRequest) -> bool:
    return True  # no id: the caller is keyed by address


async def start_from(app: Any, address: str, headers: dict[str, str] | None = None) -> int:
    """A start-call whose socket peer is ``address``; its status (429 must be rate_limited)."""
    async with client_for(app, client=(address, 40000)) as client:
        response = await client.post(START, json={}, headers=headers or {})
    if response.status_code == 429:
        assert error_code(response) == "rate_limited"
    return response.status_code


async def test_two_addresses_in_one_64_share_a_rate_limit_other_64s_do_not(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    app = broker(
        http_client=upstream_client,
        authorize=anyone,
        rate_limit="1/minute",
        max_concurrent_calls=None,
        store=make_store(),
    )
    assert await start_from(app, "2001:db8:1:2::1") == 201
    assert await start_from(app, "2001:db8:1:2:ffff:ffff:ffff:fffe") == 429  # same /64
    assert await start_from(app, "2001:db8:1:3::1") == 201  # the next /64
    assert await start_from(app, "2001:db8:2:2::1") == 201
    assert await start_from(app, "2001:DB8:1:3:0:0:0:99") == 429  # any spelling of it


async def test_allow_anonymous_keys_an_ipv6_caller_by_its_64(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    seen: list[str | None] = []

    def variables(request: CallRequest) -> dict[str, Any]:
        seen.append(request.client_ip)
        return {}

    app = broker(
        http_client=upstream_client,
        authorize=allow_anonymous,
        variables=variables,
        rate_limit="1/minute",
        max_concurrent_calls=None,
    )
    assert await start_from(app, "2001:db8:aa:bb::1") == 201
    assert oneinbox.received[-1].json()["metadata"]["caller"] == "anonymous:2001:db8:aa:bb::/64"
    assert seen == ["2001:db8:aa:bb::1"]  # hooks still see the address itself
    assert await start_from(app, "2001:db8:aa:bb::2") == 429
    assert await start_from(app, "2001:db8:aa:bc::1") == 201


@pytest.mark.parametrize(
    ("subnet", "first", "second", "shared"),
    [
        (128, "2001:db8:1:2::1", "2001:db8:1:2::2", False),  # per address
        (128, "2001:db8:1:2::1", "2001:db8:1:2::1", True),
        (56, "2001:db8:1:2::1", "2001:db8:1:ff::1", True),  # one /56, two /64s
        (56, "2001:db8:1:2::1", "2001:db8:1:100::1", False),
        (64, "192.0.2.1", "192.0.2.2", False),  # IPv4: per address, whatever the subnet
    ],
)
async def test_ipv6_subnet_option(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    subnet: int,
    first: str,
    second: str,
    shared: bool,
) -> None:
    app = broker(
        http_client=upstream_client,
        authorize=anyone,
        rate_limit="1/minute",
        max_concurrent_calls=None,
        ipv6_subnet=subnet,
    )
    assert await start_from(app, first) == 201
    assert await start_from(app, second) == (429 if shared else 201)


async def test_ipv4_mapped_ipv6_is_keyed_as_ipv4(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    seen: list[str | None] = []

    def variables(request: CallRequest) -> dict[str, Any]:
        seen.append(request.client_ip)
        return {}

    app = broker(
        http_client=upstream_client,
        authorize=anyone,
        variables=variables,
        rate_limit="1/minute",
        max_concurrent_calls=None,
    )
    # A dual-stack socket gives IPv4 peers as ::ffff:a.b.c.d, all inside ::/64.
    assert await start_from(app, "::ffff:192.0.2.1") == 201
    assert await start_from(app, "::ffff:192.0.2.2") == 201  # another IPv4 caller
    assert await start_from(app, "192.0.2.1") == 429  # the same IPv4 caller
    assert seen == ["192.0.2.1", "192.0.2.2"]


async def test_forwarded_ipv6_from_a_trusted_proxy_is_keyed_by_its_64(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(
        http_client=upstream_client,
        authorize=anyone,
        rate_limit="1/minute",
        max_concurrent_calls=None,
        trusted_proxies=["10.0.0.0/8", "2001:db8:ffff::/48"],
    )

    async def via_proxy(proxy: str, forwarded: str) -> int:
        return await start_from(app, proxy, {"X-Forwarded-For": forwarded})

    assert await via_proxy("10.0.0.5", "2001:db8:1:2::1") == 201
    assert await via_proxy("10.0.0.6", "2001:db8:1:2::abcd") == 429
    assert await via_proxy("10.0.0.5", "198.51.100.7, [2001:db8:1:2::3]:443") == 429
    assert await via_proxy("2001:db8:ffff::1", "2001:db8:1:2::4, 2001:db8:ffff::2") == 429
    assert await via_proxy("10.0.0.5", "2001:db8:1:3::1") == 201
    assert await via_proxy("10.0.0.5", "::ffff:203.0.113.9") == 201
    assert await via_proxy("10.0.0.5", "::ffff:203.0.113.10") == 201  # not one /64
    # An untrusted peer's header is ignored: the peer's own /64 is the key.
    assert await via_proxy("2001:db8:9:9::1", "2001:db8:7:7::1") == 201
    assert await via_proxy("2001:db8:9:9::2", "2001:db8:8:8::1") == 429


async def test_a_call_started_over_ipv6_is_ended_by_its_caller(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, authorize=allow_anonymous, rate_limit=None)
    async with client_for(app, client=("2001:db8:5:6::1", 40000)) as client:
        started = await client.post(START, json={})
        assert started.status_code == 201
        assert (await client.post(START, json={})).status_code == 429  # cap 1
        ended = await client.post(END, json={"end_token": started.json()["end_token"]})
        assert ended.status_code == 200, ended.text
        assert (await client.post(START, json={})).status_code == 201


def test_limit_keys_and_networks() -> None:
    assert limit_key(True, "2001:db8:1:2:3:4:5:6") == "ip:2001:db8:1:2::/64"
    assert limit_key(None, "203.0.113.7") == "ip:203.0.113.7"
    assert limit_key(None, None) == "ip:unknown"
    assert limit_key("u1", "2001:db8::1") == "id:u1"
    assert network_of("2001:db8:1:2::1", 128) == "2001:db8:1:2::1"
    assert network_of("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert network_of("fe80::1%eth0") == "fe80::/64"
    assert network_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert network_of("not an address") == "not an address"
    scope = {"client": ("2001:db8:1:2::1", 1), "headers": []}
    assert ClientAddress(ipv6_subnet=128).of(scope) == "2001:db8:1:2::1"
    assert limit_key(None, ClientAddress(ipv6_subnet=128).of(scope)) == "ip:2001:db8:1:2::1"
    resolved = ClientAddress(ipv6_subnet=32).of(scope)
    assert limit_key(None, resolved) == "ip:2001:db8::/32"
    pickled = pickle.loads(pickle.dumps(resolved))  # noqa: S301 - our own bytes
    for copied in (copy.deepcopy(resolved), pickled):
        assert copied == "2001:db8:1:2::1" and network_of(copied) == "2001:db8::/32"


@pytest.mark.parametrize("value", [0, 129, -64, True, "64", 64.0, None])
def test_ipv6_subnet_is_checked_at_construction(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="ipv6_subnet") as raised:
        broker(ipv6_subnet=value)
    assert "128" in str(raised.value)  # the message names the valid range
