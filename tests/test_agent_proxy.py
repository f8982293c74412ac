"""Requests through a real proxy (Debian's tinyproxy): absolute form for http targets, a CONNECT
tunnel with TLS inside for https ones, credentials for the proxy alone."""

from __future__ import annotations

import logging

import anyio
import pytest
from helpers import assert_settled
from proxies import TinyproxyServer
from servers import TLSFiles, UvicornServer, wait_until

from starlette_agent import Agent, InvalidOption, ProxyError

pytestmark = pytest.mark.anyio

SECRET = "s3cret-Pa55"


def _received_headers(response_json: dict[str, object]) -> dict[str, str]:
    headers = response_json["headers"]
    assert isinstance(headers, list)
    return {name: value for name, value in headers}


async def test_an_http_target_goes_through_the_proxy_in_absolute_form(
    proxy_server: TinyproxyServer, server: UvicornServer
) -> None:
    async with Agent(proxy=proxy_server.url) as agent:
        for _ in range(3):
            response = await agent.get(f"{server.url}/echo?x=1")
            assert response.status == 200
            assert response.json()["query"] == "x=1"
        assert_settled(agent)
    assert await wait_until(lambda: len(proxy_server.stats.request_lines) == 3)
    assert proxy_server.stats.request_lines == [f"GET {server.url}/echo?x=1 HTTP/1.1"] * 3
    assert server.stats.requests == 3


async def test_an_https_target_is_tunnelled_with_tls_to_the_target(
    proxy_server: TinyproxyServer, tls_server: UvicornServer, tls: TLSFiles
) -> None:
    async with Agent(proxy=proxy_server.url, ssl_context=tls.client_context()) as agent:
        for _ in range(5):
            response = await agent.get(f"{tls_server.url}/echo")
            assert response.status == 200
        assert response.reused_socket is True  # one tunnel carries them all
        assert_settled(agent)
    assert await wait_until(lambda: len(proxy_server.stats.request_lines) == 1)
    assert proxy_server.stats.request_lines == [f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.1"]
    assert tls_server.stats.opened == 1
    assert tls_server.stats.requests == 5


async def test_the_target_certificate_is_checked_through_the_tunnel(
    proxy_server: TinyproxyServer, tls_server: UvicornServer
) -> None:
    async with Agent(proxy=proxy_server.url) as agent:  # the system CAs do not know the test CA
        with pytest.raises(Exception) as caught:
            await agent.get(f"{tls_server.url}/echo")
        assert "certificate" in str(caught.value).lower() or "TLS" in str(caught.value)
        assert_settled(agent)
    assert tls_server.stats.requests == 0


async def test_credentials_go_to_the_proxy_and_never_to_the_target(
    auth_proxy_server: TinyproxyServer,
    server: UvicornServer,
    tls_server: UvicornServer,
    tls: TLSFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="starlette_agent")
    async with Agent(proxy=auth_proxy_server.url, ssl_context=tls.client_context()) as agent:
        plain = (await agent.get(f"{server.url}/echo")).json()
        tunnelled = (await agent.get(f"{tls_server.url}/echo")).json()
        for seen in (plain, tunnelled):
            assert "proxy-authorization" not in _received_headers(seen)
        texts = [
            repr(agent),
            repr(agent.config),
            agent.get_name(server.url),
            agent.get_name(tls_server.url),
            str(agent.stats().as_dict()),
        ]
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text and "alice" not in text, text
    assert f"proxy=http://127.0.0.1:{auth_proxy_server.port}" in texts[2]


async def test_a_proxy_that_refuses_credentials_is_a_proxy_error(
    auth_proxy_server: TinyproxyServer, tls_server: UvicornServer, tls: TLSFiles
) -> None:
    wrong = f"http://alice:wrong@127.0.0.1:{auth_proxy_server.port}"
    async with Agent(proxy=wrong, ssl_context=tls.client_context(), max_sockets=1) as agent:
        for _ in range(3):  # the refused tunnel gives its slot back each time
            with anyio.fail_after(10), pytest.raises(ProxyError) as caught:
                await agent.get(f"{tls_server.url}/echo")
            assert caught.value.status in (401, 407)  # tinyproxy says 401 to wrong ones
            assert caught.value.proxy == f"http://127.0.0.1:{auth_proxy_server.port}"
            assert "wrong" not in str(caught.value)
        assert_settled(agent)
        assert agent.stats().errors == 3
    assert tls_server.stats.requests == 0


async def test_an_http_target_behind_a_refusing_proxy_gets_the_proxy_answer(
    auth_proxy_server: TinyproxyServer, server: UvicornServer
) -> None:
    async with Agent(proxy=f"http://127.0.0.1:{auth_proxy_server.port}") as agent:
        response = await agent.get(f"{server.url}/echo")
        assert response.status == 407  # an HTTP answer, as Node and httpx give it
        assert_settled(agent)
    assert server.stats.requests == 0


async def test_a_tunnel_the_proxy_cannot_open_is_a_proxy_error(
    proxy_server: TinyproxyServer,
) -> None:
    async with Agent(proxy=proxy_server.url) as agent:
        # Nothing listens on port 1 of 127.0.0.1: tinyproxy answers the CONNECT with an error.
        with anyio.fail_after(10), pytest.raises(ProxyError) as caught:
            await agent.get("https://127.0.0.1:1/")
        assert caught.value.status is not None and caught.value.status >= 400
        assert_settled(agent)


async def test_proxied_and_direct_sockets_never_mix(
    proxy_server: TinyproxyServer, server: UvicornServer
) -> None:
    other = f"http://127.0.0.1:{proxy_server.port + 1}"
    async with Agent() as direct, Agent(proxy=proxy_server.url) as proxied:
        names = {
            direct.get_name(server.url),
            proxied.get_name(server.url),
            Agent(proxy=other).get_name(server.url),
        }
        assert len(names) == 3
        await direct.get(f"{server.url}/peer")
        await proxied.get(f"{server.url}/peer")
        assert proxied.stats().origins.keys() == {proxied.get_name(server.url)}


async def test_limits_count_tunnels_per_target_origin(
    proxy_server: TinyproxyServer, tls_server: UvicornServer, tls: TLSFiles
) -> None:
    async with Agent(
        proxy=proxy_server.url, ssl_context=tls.client_context(), max_sockets=2
    ) as agent:
        most = 0

        async def one() -> None:
            nonlocal most
            await agent.get(f"{tls_server.url}/peer?delay=0.02")
            most = max(most, agent.stats().active + agent.stats().idle)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert most <= 2
        assert_settled(agent)
    assert tls_server.stats.opened <= 2
    assert await wait_until(lambda: len(proxy_server.stats.request_lines) >= 1)
    assert len(proxy_server.stats.request_lines) <= 2


async def test_trust_env_reads_the_proxy_variables(
    proxy_server: TinyproxyServer, server: UvicornServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy_server.url)
    async with Agent(trust_env=True) as agent:
        assert (await agent.get(f"{server.url}/peer")).status == 200
    assert await wait_until(lambda: len(proxy_server.stats.request_lines) == 1)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Agent(trust_env=True) as agent:
        assert (await agent.get(f"{server.url}/peer")).status == 200
        assert "proxy=" not in agent.get_name(server.url)
    await anyio.sleep(0.2)
    assert len(proxy_server.stats.request_lines) == 1  # the second went direct
    async with Agent() as agent:  # trust_env is off by default
        assert "proxy=" not in agent.get_name(server.url)


def test_bad_proxy_options_are_refused() -> None:
    with pytest.raises(InvalidOption, match="proxy"):
        Agent(proxy="socks5://u:hunter2@p:1080")
    with pytest.raises(InvalidOption) as caught:
        Agent(proxy="ftp://u:hunter2@p:21")
    assert "hunter2" not in str(caught.value)

    async def connector(origin: object) -> object:
        raise AssertionError  # pragma: no cover

    with pytest.raises(InvalidOption, match="connector"):
        Agent(proxy="http://p:3128", connector=connector)  # type: ignore[arg-type]
