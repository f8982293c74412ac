"""https against a local uvicorn; TLS settings are part of the pool key (issue 2, behaviour 10)."""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import pytest
from servers import TLSFiles, UvicornServer

from starlette_agent import Agent, AgentError, ConnectError, Origin, _routes

pytestmark = pytest.mark.anyio


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_https_request_and_reuse(tls_server: UvicornServer, tls: TLSFiles) -> None:
    async with Agent(ssl_context=tls.client_context()) as agent:
        for _ in range(20):
            response = await agent.get(f"{tls_server.url}/echo")
            assert response.status == 200
        assert response.reused_socket is True
        assert tls_server.stats.opened == 1
        assert tls_server.stats.requests == 20


async def test_the_default_context_keeps_one_pool_key(
    tls_server: UvicornServer, tls: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent's default context, made on first use, trusting the test CA here.
    monkeypatch.setattr(_routes, "_default_context", tls.client_context())
    url = f"{tls_server.url}/peer"
    async with Agent() as agent:
        name = agent.get_name(url)
        responses = [await agent.get(url) for _ in range(3)]
        assert [response.reused_socket for response in responses] == [False, True, True]
        assert agent.get_name(url) == name
        assert list(agent.stats().origins) == [name]
    assert tls_server.stats.opened == 1


async def test_default_context_rejects_an_untrusted_certificate(
    tls_server: UvicornServer,
) -> None:
    async with Agent() as agent:
        with pytest.raises(ConnectError) as caught:
            await agent.get(f"{tls_server.url}/peer")
        assert tls_server.origin in str(caught.value)
        assert agent.stats().active == 0
        assert agent.stats().idle == 0
    assert tls_server.stats.requests == 0


async def test_hostname_is_verified(tls_server: UvicornServer, tls: TLSFiles) -> None:
    # The certificate names 127.0.0.1 and localhost, so another name must fail verification.
    async def connector(origin: Origin) -> anyio.abc.ByteStream:
        return await anyio.connect_tcp("127.0.0.1", tls_server.port)

    async with Agent(ssl_context=tls.client_context(), connector=connector) as agent:
        with pytest.raises(AgentError):
            await agent.get(f"https://not-the-name.test:{tls_server.port}/peer")
    assert tls_server.stats.requests == 0


async def test_unverified_socket_is_never_given_to_a_verifying_request(
    tls_server: UvicornServer, tls: TLSFiles
) -> None:
    verifying = tls.client_context()
    unverified = _unverified_context()
    url = f"{tls_server.url}/peer"
    async with Agent(ssl_context=verifying) as agent:
        assert agent.get_name(url) != agent.get_name(url, ssl_context=unverified)
        assert agent.get_name(url) == agent.get_name(url, ssl_context=verifying)

        insecure = await agent.get(url, ssl_context=unverified)
        secure = await agent.get(url)
        assert secure.reused_socket is False
        assert secure.json()["port"] != insecure.json()["port"]
        assert tls_server.stats.opened == 2

        # Each kind reuses its own socket.
        assert (await agent.get(url, ssl_context=unverified)).json()["port"] == insecure.json()[
            "port"
        ]
        assert (await agent.get(url)).json()["port"] == secure.json()["port"]
        assert tls_server.stats.opened == 2
        assert len(agent.stats().origins) == 2


async def test_agent_with_verification_off_never_shares_with_default_agent_key(
    tls_server: UvicornServer, tls: TLSFiles
) -> None:
    url = f"{tls_server.url}/peer"
    async with Agent(ssl_context=_unverified_context()) as insecure_agent, Agent() as default:
        assert insecure_agent.get_name(url) != default.get_name(url)
        assert (await insecure_agent.get(url)).status == 200


async def test_get_name_distinguishes_scheme_host_port_and_local_address() -> None:
    async with Agent() as agent, Agent(local_address="127.0.0.1") as bound:
        http = agent.get_name("http://127.0.0.1:8000/a")
        assert http == agent.get_name("http://127.0.0.1:8000/b?c=d")
        assert http != agent.get_name("https://127.0.0.1:8000/a")
        assert http != agent.get_name("http://127.0.0.1:8001/a")
        assert http != agent.get_name("http://localhost:8000/a")
        assert http != bound.get_name("http://127.0.0.1:8000/a")
        assert agent.get_name("http://example.com/") == agent.get_name("http://EXAMPLE.com:80/")
        assert "127.0.0.1" in http
        assert "8000" in http


async def test_connector_stream_is_wrapped_in_tls(tls_server: UvicornServer, tls: TLSFiles) -> None:
    origins: list[Origin] = []

    async def connector(origin: Origin) -> anyio.abc.ByteStream:
        origins.append(origin)
        return await anyio.connect_tcp(origin.host, origin.port)

    async with Agent(ssl_context=tls.client_context(), connector=connector) as agent:
        response = await agent.get(f"{tls_server.url}/echo")
        assert response.status == 200
        await agent.get(f"{tls_server.url}/echo")
    assert origins == [Origin("https", "127.0.0.1", tls_server.port)]
    assert tls_server.stats.opened == 1


async def test_local_address_is_used(server: UvicornServer) -> None:
    async with Agent(local_address="127.0.0.1") as agent:
        assert (await agent.get(f"{server.url}/peer")).status == 200
