"""block_private_networks: an agent that fetches URLs users supply cannot be aimed inside (SSRF).

The guard judges the addresses a host resolves to, so every spelling of 127.0.0.1 is refused
before a byte is sent. Every test here runs under ``loopback_only``: if the guard is broken, the
agent still cannot reach past this machine. That patch sees the connects of asyncio and trio
only (uvloop connects in C), so these tests run on those two backends.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from helpers import assert_settled
from loopback_only import (
    ConnectLog,
    OffMachineConnect,
    is_loopback,
    loopback_only_fixture,  # noqa: F401 - provides the loopback_only fixture
    refuse_off_machine_connects,
    socket_backends,
)
from proxies import TinyproxyServer
from servers import RawServer, UvicornServer

from starlette_agent import Agent, AgentError, AgentSettings, BlockedAddress
from starlette_agent._urls import parse_url


@pytest.fixture(params=socket_backends)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/echo",
    "http://localhost:{port}/echo",
    "http://2130706433:{port}/echo",
    "http://[::ffff:127.0.0.1]:{port}/echo",
    "http://0177.0.0.1:{port}/echo",
    "http://0x7f.1:{port}/echo",
    "http://127.0.0.2:{port}/echo",
]


# --------------------------------------------------------------------------- the guard on


@pytest.mark.anyio
@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
async def test_guard_refuses_loopback_before_connecting(
    server: UvicornServer, loopback_only: ConnectLog, url: str
) -> None:
    url = url.format(port=server.port)
    async with Agent(block_private_networks=True) as agent:
        with pytest.raises(BlockedAddress) as caught:
            await agent.get(url)
        assert_settled(agent)
        assert agent.stats().connections_created == 0
    error = caught.value
    assert error.host == parse_url(url).origin.host
    assert is_loopback((error.address, 0))
    assert "loopback" in str(error) and error.host in str(error)
    assert loopback_only.attempts == []
    assert server.stats.opened == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("10.0.0.1", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("100.64.0.1", "CGNAT"),
        ("192.0.2.1", "documentation"),
        ("0.0.0.0", "unspecified"),
        ("[fd00::1]", "unique local"),
        ("[fe80::1]", "link-local"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[64:ff9b::10.0.0.1]", "private (RFC 1918)"),
    ],
)
async def test_guard_refuses_internal_addresses_without_sending_a_packet(
    loopback_only: ConnectLog, host: str, reason: str
) -> None:
    async with Agent(block_private_networks=True) as agent:
        with pytest.raises(BlockedAddress, match=re.escape(reason)):
            await agent.get(f"http://{host}:9/", timeout=5)
        assert_settled(agent)
    assert loopback_only.attempts == []


@pytest.mark.anyio
async def test_refused_requests_hold_no_pool_slot(
    server: UvicornServer, loopback_only: ConnectLog
) -> None:
    async with Agent(
        block_private_networks=True,
        allowed_networks=["127.0.0.1/32"],
        max_sockets=1,
        max_total_sockets=1,
        pool_timeout=5,
    ) as agent:
        for _ in range(20):
            with pytest.raises(BlockedAddress):
                await agent.get(f"http://127.0.0.2:{server.port}/echo")
        response = await agent.get(f"{server.url}/echo")
        assert response.status == 200
        assert_settled(agent)
    assert server.stats.opened == 1


# --------------------------------------------------------------------------- let through


@pytest.mark.anyio
@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
async def test_guard_off_connects_to_loopback(
    server: UvicornServer, loopback_only: ConnectLog, url: str
) -> None:
    url = url.format(port=server.port)
    async with Agent(block_private_networks=False) as agent:
        if "127.0.0.2" in url:
            # Nothing listens there; reaching the connect is the point.
            with pytest.raises(AgentError):
                await agent.get(url, timeout=5)
        else:
            assert (await agent.get(url)).status == 200
    assert loopback_only.attempts


@pytest.mark.anyio
@pytest.mark.parametrize("url", [u for u in LOOPBACK_SPELLINGS if "127.0.0.2" not in u])
async def test_allowed_networks_let_loopback_through(
    server: UvicornServer, loopback_only: ConnectLog, url: str
) -> None:
    async with Agent(block_private_networks=True, allowed_networks=["127.0.0.0/8"]) as agent:
        response = await agent.get(url.format(port=server.port))
        assert response.status == 200
    assert server.stats.opened == 1


@pytest.mark.anyio
async def test_settings_create_a_guarded_agent(
    server: UvicornServer, loopback_only: ConnectLog
) -> None:
    settings = AgentSettings(block_private_networks=True, allowed_networks=["10.0.0.0/8"])
    agent = settings.create_agent()
    try:
        assert agent.config.block_private_networks is True
        assert agent.config.allowed_networks == ("10.0.0.0/8",)
        with pytest.raises(BlockedAddress):
            await agent.get(f"{server.url}/echo")
    finally:
        await agent.aclose()
    assert server.stats.opened == 0


# --------------------------------------------------------------------------- the safety net


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (("127.0.0.1", 80), True),
        (("127.255.0.9", 80), True),
        (("::1", 80, 0, 0), True),
        (("::ffff:127.0.0.1", 80, 0, 0), True),
        (("fe80::1%lo", 80, 0, 1), False),
        (("10.0.0.1", 80), False),
        (("::ffff:10.0.0.1", 80, 0, 0), False),
        (("2606:4700::1", 80, 0, 0), False),
        (("localhost", 80), False),
        ("/tmp/app.sock", True),
    ],
)
def test_the_safety_net_knows_loopback(address: object, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_the_safety_net_refuses_off_machine_connects(
    monkeypatch: pytest.MonkeyPatch, raw_server: RawServer
) -> None:
    log = refuse_off_machine_connects(monkeypatch)
    # 255.255.255.255: were the patch broken, the kernel would refuse this locally.
    with socket.socket() as sock, pytest.raises(OffMachineConnect):
        sock.connect(("255.255.255.255", 9))
    with socket.socket() as sock, pytest.raises(OffMachineConnect):
        sock.connect_ex(("255.255.255.255", 9))
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=5):
        pass
    assert log.refused == [("255.255.255.255", 9)] * 2
    assert log.attempts[-1] == ("127.0.0.1", raw_server.port)


@pytest.mark.anyio
async def test_the_safety_net_sees_the_agents_connects(
    monkeypatch: pytest.MonkeyPatch, server: UvicornServer
) -> None:
    log = refuse_off_machine_connects(monkeypatch)
    async with Agent() as agent:
        assert (await agent.get(f"{server.url}/echo")).status == 200
        with pytest.raises(BaseException):  # noqa: B017 - whatever the backend wraps it in
            await agent.get("http://255.255.255.255:9/", timeout=5)
    assert [a[0] for a in log.attempts] == ["127.0.0.1", "255.255.255.255"]
    assert [ipaddress.ip_address(a[0]) for a in log.refused] == [
        ipaddress.ip_address("255.255.255.255")
    ]


# --------------------------------------------------------------------------- through a proxy


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/", "https://192.168.1.1/", "http://[fd00::1]:8080/", "http://2130706433/"],
)
async def test_a_proxied_request_to_an_internal_address_is_refused_before_the_proxy(
    proxy_server: TinyproxyServer, loopback_only: ConnectLog, url: str
) -> None:
    async with Agent(proxy=proxy_server.url, block_private_networks=True) as agent:
        with pytest.raises(BlockedAddress):
            await agent.get(url)
        assert_settled(agent)
    assert loopback_only.attempts == []  # not even the proxy was asked
    assert proxy_server.stats.request_lines == []


@pytest.mark.anyio
async def test_the_proxy_the_operator_chose_is_not_refused(
    proxy_server: TinyproxyServer, server: UvicornServer, loopback_only: ConnectLog
) -> None:
    # The proxy listens on loopback, which the guard refuses as a target; as the operator's
    # chosen proxy it is let through, and the target name is resolved by the proxy.
    async with Agent(proxy=proxy_server.url, block_private_networks=True) as agent:
        response = await agent.get(f"http://localhost:{server.port}/echo")
        assert response.status == 200
    assert [address[1] for address in loopback_only.attempts] == [proxy_server.port]
