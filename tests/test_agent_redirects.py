"""Following redirects: each hop a request through the pool, the method and body rules of each
code, credentials dropped on a change of origin, against real uvicorns (and one over TLS)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from helpers import assert_settled
from servers import TLSFiles, UvicornServer

from starlette_agent import (
    Agent,
    BlockedAddress,
    RedirectError,
    Request,
    Response,
    TooManyRedirects,
)
from starlette_agent.testing import MockAgent

pytestmark = pytest.mark.anyio

CODES = [301, 302, 303, 307, 308]


def redirect(server: UvicornServer, code: int, to: str, **query: str) -> str:
    extra = "".join(f"&{name}={value}" for name, value in query.items())
    return f"{server.url}/redirect/{code}?to={quote(to, safe='')}{extra}"


def sent(response: Response) -> dict[str, Any]:
    """What ``/echo`` saw: method, body, and the headers as a dict."""
    echoed = response.json()
    return {**echoed, "headers": dict(echoed["headers"])}


@pytest.mark.parametrize("code", CODES)
async def test_every_redirect_code_is_followed_through_the_pool(
    server: UvicornServer, code: int
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(redirect(server, code, "/echo?hop=2"))
        assert response.status == 200
        assert response.url == f"{server.url}/echo?hop=2"
        assert sent(response)["query"] == "hop=2"
        [earlier] = response.history
        assert earlier.status == code
        assert earlier.headers["location"] == "/echo?hop=2"
        assert earlier.content == b""  # read, so its socket was free for the next hop
        assert earlier.request.url == redirect(server, code, "/echo?hop=2")
        assert response.request.url == f"{server.url}/echo?hop=2"
        stats = agent.stats()
        assert (stats.requests, stats.connections_created, stats.connections_reused) == (2, 1, 1)
        assert_settled(agent)
    assert (server.stats.opened, server.stats.requests) == (1, 2)


async def test_a_chain_reuses_one_socket_and_lists_every_hop(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(f"{server.url}/chain/4")
        assert [r.status for r in response.history] == [302, 302, 302, 302]
        assert [r.url for r in response.history] == [
            f"{server.url}/chain/{n}" for n in (4, 3, 2, 1)
        ]
        assert response.history[-1].history == response.history[:-1]
        assert agent.stats().requests == 5
        assert agent.stats().connections_reused == 4
    assert server.stats.opened == 1
    assert server.stats.request_lines == [f"GET /chain/{n}" for n in (4, 3, 2, 1)] + ["GET /echo"]


async def test_redirects_are_not_followed_unless_asked(server: UvicornServer) -> None:
    url = redirect(server, 302, "/echo")
    async with Agent() as agent:
        response = await agent.get(url)
        assert (response.status, response.is_redirect, response.history) == (302, True, [])
        assert (await agent.get(url, follow_redirects=True)).status == 200
    async with Agent(follow_redirects=True) as agent:
        assert (await agent.get(url, follow_redirects=False)).status == 302
        assert (await agent.get(url, follow_redirects=None)).status == 200  # the agent's


@pytest.mark.parametrize("code", [301, 302, 303])
async def test_301_302_303_turn_a_post_into_a_get_without_its_body(
    server: UvicornServer, code: int
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.post(redirect(server, code, "/echo"), json={"pay": 10})
    echoed = sent(response)
    assert (echoed["method"], echoed["body"]) == ("GET", "")
    assert "content-type" not in echoed["headers"]
    assert "content-length" not in echoed["headers"]
    assert server.stats.request_lines == [f"POST /redirect/{code}", "GET /echo"]


@pytest.mark.parametrize("code", [307, 308])
async def test_307_308_send_the_same_method_and_body_again(
    server: UvicornServer, code: int
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.put(redirect(server, code, "/echo"), json={"pay": 10})
    echoed = sent(response)
    assert (echoed["method"], json.loads(echoed["body"])) == ("PUT", {"pay": 10})
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["content-length"] == "10"


async def test_a_head_stays_a_head(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.head(redirect(server, 302, "/echo"))
    assert response.status == 200
    assert server.stats.request_lines == ["HEAD /redirect/302", "HEAD /echo"]


async def test_a_one_shot_stream_is_not_sent_twice(server: UvicornServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"only once"

    async with Agent(follow_redirects=True) as agent:
        with pytest.raises(RedirectError, match="async iterable, read once") as caught:
            await agent.post(redirect(server, 307, "/echo"), content=body())
        assert caught.value.response.status == 307
        assert_settled(agent)
        # A 303 sends no body, so a stream is no obstacle there.
        response = await agent.post(redirect(server, 303, "/echo"), content=body())
        assert sent(response)["method"] == "GET"
    assert server.stats.request_lines == ["POST /redirect/307", "POST /redirect/303", "GET /echo"]


CREDENTIALS = {
    "Authorization": "Bearer secret",
    "Cookie": "session=1",
    "Proxy-Authorization": "Basic cHJveHk=",
    "X-Trace": "kept",
}


async def test_credentials_are_dropped_on_a_change_of_port(
    server: UvicornServer, server2: UvicornServer
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(
            redirect(server, 302, f"{server2.url}/echo"), headers=CREDENTIALS
        )
    headers = sent(response)["headers"]
    assert headers["x-trace"] == "kept"
    assert headers["host"] == f"127.0.0.1:{server2.port}"
    for name in ("authorization", "cookie", "proxy-authorization"):
        assert name not in headers
    assert server2.stats.requests == 1


async def test_credentials_are_dropped_on_a_change_of_host(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True) as agent:
        to_localhost = redirect(server, 307, f"http://localhost:{server.port}/echo")
        response = await agent.get(to_localhost, auth=("ada", "pw"), headers={"Cookie": "a=1"})
    headers = sent(response)["headers"]
    assert headers["host"] == f"localhost:{server.port}"
    assert "authorization" not in headers and "cookie" not in headers


async def test_credentials_stay_on_the_same_origin(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True) as agent:
        with_userinfo = redirect(server, 302, "/echo").replace("http://", "http://ada:pw@")
        response = await agent.get(with_userinfo, headers={"Cookie": "a=1"})
    headers = sent(response)["headers"]
    assert headers["authorization"].startswith("Basic ")
    assert headers["cookie"] == "a=1"
    assert response.url == f"{server.url}/echo"  # the credentials went as a header, not in URLs


async def test_credentials_in_a_location_are_not_used(
    server: UvicornServer, server2: UvicornServer
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(
            redirect(server, 302, f"http://eve:stolen@127.0.0.1:{server2.port}/echo")
        )
    assert "authorization" not in sent(response)["headers"]
    assert response.url == f"{server2.url}/echo"


async def test_a_relative_location_is_resolved_against_the_request_url(
    server: UvicornServer,
) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(redirect(server, 302, "../echo?x=1"))
    assert response.url == f"{server.url}/echo?x=1"


async def test_a_location_in_utf8_or_with_spaces_is_percent_encoded(
    server: UvicornServer,
) -> None:
    """Servers write a non-ASCII Location in UTF-8 and leave spaces in it; httpx and browsers
    follow it, percent-encoding what a request line cannot carry."""
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(redirect(server, 302, "/café au lait?q=a b&r=ü"))
        echoed = await agent.get(redirect(server, 302, "/echo?q=a b&r=ü"))
    assert response.request.target == b"/caf%C3%A9%20au%20lait?q=a%20b&r=%C3%BC"
    assert response.url == f"{server.url}/caf%C3%A9%20au%20lait?q=a%20b&r=%C3%BC"
    assert (response.status, response.history[0].status) == (404, 302)  # no such page: followed
    assert sent(echoed)["query"] == "q=a%20b&r=%C3%BC"
    assert server.stats.request_lines[:2] == ["GET /redirect/302", "GET /café au lait"]


async def test_a_fragment_is_never_sent_and_carries_over_a_location_without_one(
    server: UvicornServer,
) -> None:
    """RFC 9110 10.2.2: a Location without a fragment inherits the request's."""
    async with Agent(follow_redirects=True) as agent:
        kept = await agent.get(redirect(server, 302, "/echo") + "#section-2")
        own = await agent.get(redirect(server, 302, "/echo#top") + "#section-2")
    assert kept.url == f"{server.url}/echo#section-2"
    assert own.url == f"{server.url}/echo#top"
    assert kept.request.target == own.request.target == b"/echo"
    assert server.stats.request_lines == ["GET /redirect/302", "GET /echo"] * 2


async def test_https_to_http_is_refused_unless_allowed(
    tls_server: UvicornServer, server: UvicornServer, tls: TLSFiles
) -> None:
    url = redirect(tls_server, 302, f"{server.url}/echo")
    async with Agent(ssl_context=tls.client_context(), follow_redirects=True) as agent:
        with pytest.raises(RedirectError, match="from https to") as caught:
            await agent.get(url)
        assert caught.value.response.status == 302
        assert_settled(agent)
    assert server.stats.requests == 0
    async with Agent(
        ssl_context=tls.client_context(), follow_redirects=True, allow_https_downgrade=True
    ) as agent:
        assert (await agent.get(url)).status == 200
    assert server.stats.requests == 1


async def test_each_hop_passes_the_address_guard(server: UvicornServer) -> None:
    async with Agent(
        follow_redirects=True, block_private_networks=True, allowed_networks=["127.0.0.1/32"]
    ) as agent:
        with pytest.raises(BlockedAddress, match="::1 is loopback"):
            await agent.get(redirect(server, 302, f"http://[::1]:{server.port}/echo"))
        assert_settled(agent)
    assert server.stats.request_lines == ["GET /redirect/302"]


async def test_http_to_https_is_followed(
    tls_server: UvicornServer, server: UvicornServer, tls: TLSFiles
) -> None:
    async with Agent(ssl_context=tls.client_context(), follow_redirects=True) as agent:
        response = await agent.get(redirect(server, 301, f"{tls_server.url}/echo"))
    assert response.url == f"{tls_server.url}/echo"
    assert tls_server.stats.requests == 1


async def test_max_redirects_and_loops_raise_too_many_redirects(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True, max_redirects=2) as agent:
        with pytest.raises(TooManyRedirects, match="more than max_redirects=2") as caught:
            await agent.get(f"{server.url}/chain/3")
        assert caught.value.response.headers["location"] == "/echo"
        assert (await agent.get(f"{server.url}/chain/2")).status == 200
        with pytest.raises(TooManyRedirects, match=r"\(a loop\)"):
            await agent.get(f"{server.url}/loop")
        assert_settled(agent)
    assert server.stats.request_lines[:3] == ["GET /chain/3", "GET /chain/2", "GET /chain/1"]
    assert server.stats.request_lines.count("GET /loop") == 3
    async with Agent(follow_redirects=True, max_redirects=0) as agent:
        with pytest.raises(TooManyRedirects):
            await agent.get(f"{server.url}/chain/1")


async def test_a_long_redirect_body_is_not_drained(server: UvicornServer) -> None:
    async with Agent(follow_redirects=True) as agent:
        response = await agent.get(redirect(server, 302, "/echo", body=str(200_000)))
        assert response.status == 200
        assert agent.stats().connections_created == 2  # the first socket was closed, not drained
        short = await agent.get(redirect(server, 302, "/echo", body="1000"))
        assert short.history[0].content == b"r" * 1000
        assert agent.stats().connections_created == 2


async def test_stream_follows_redirects_and_streams_the_last_response(
    server: UvicornServer,
) -> None:
    async with Agent() as agent:
        url = redirect(server, 303, "/stream/3")
        async with agent.stream("POST", url, follow_redirects=True) as response:
            assert [r.status for r in response.history] == [303]
            assert agent.stats().active == 1  # the last response holds its socket, unread
            lines = [line async for line in response.aiter_lines()]
        assert lines == ["chunk-0", "chunk-1", "chunk-2"]
        assert_settled(agent)


class Hops(Agent):
    """Sees every hop at the public seam."""

    def __init__(self) -> None:
        super().__init__(follow_redirects=True)
        self.seen: list[str] = []

    async def dispatch(self, request: Request) -> Response:
        self.seen.append(f"{request.method} {request.target.decode()}")
        return await super().dispatch(request)


async def test_each_hop_goes_through_dispatch(server: UvicornServer) -> None:
    async with Hops() as agent:
        await agent.get(f"{server.url}/chain/2")
    assert agent.seen == ["GET /chain/2", "GET /chain/1", "GET /echo"]


async def test_a_mock_agent_answers_each_hop() -> None:
    async with MockAgent(follow_redirects=True) as mock:
        mock.intercept("POST", "http://api.test/old").reply(308, headers={"Location": "/new"})
        mock.intercept("POST", "http://api.test/new").reply(201, json={"ok": True})
        response = await mock.post("http://api.test/old", json={"a": 1})
        assert response.status == 201
        assert [r.body for r in mock.requests] == [b'{"a":1}', b'{"a":1}']
        mock.assert_no_pending_interceptors()
