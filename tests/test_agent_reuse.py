"""Keep-alive reuse (issue 2, behaviour 1), counted by the server."""

from __future__ import annotations

import json

import pytest
from helpers import assert_settled, origin_stats
from servers import UvicornServer, wait_until

from starlette_agent import Agent

pytestmark = pytest.mark.anyio


async def test_sequential_requests_share_one_connection(server: UvicornServer) -> None:
    async with Agent() as agent:
        first = await agent.get(f"{server.url}/peer")
        assert first.status == 200
        assert first.reused_socket is False
        for _ in range(999):
            response = await agent.get(f"{server.url}/peer")
            assert response.status == 200
            assert response.reused_socket is True
        assert server.stats.opened == 1
        assert server.stats.requests == 1000
        assert len(set(server.stats.request_ports)) == 1
        stats = agent.stats()
        assert stats.connections_created == 1
        assert stats.connections_reused == 999
        assert stats.requests == 1000
        assert stats.errors == 0


async def test_keep_alive_false_opens_one_connection_per_request(server: UvicornServer) -> None:
    async with Agent(keep_alive=False) as agent:
        for _ in range(20):
            response = await agent.get(f"{server.url}/echo")
            assert response.json()["connection"] == "close"
            assert response.reused_socket is False
        assert await wait_until(lambda: server.stats.closed == 20)
        assert server.stats.opened == 20
        assert agent.stats().idle == 0


async def test_buffered_request_releases_its_socket_before_returning(
    server: UvicornServer,
) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/bytes/1000")
        assert response.content == b"x" * 1000
        pool = origin_stats(agent, server.url)
        assert (pool.active, pool.idle, pool.queued) == (0, 1, 0)
        assert_settled(agent)
        assert agent.stats().idle == 1


async def test_each_agent_has_its_own_sockets(server: UvicornServer) -> None:
    async with Agent() as one, Agent() as two:
        await one.get(f"{server.url}/peer")
        await two.get(f"{server.url}/peer")
        await one.get(f"{server.url}/peer")
        await two.get(f"{server.url}/peer")
    assert server.stats.opened == 2
    assert server.stats.requests == 4


async def test_max_requests_per_socket_rotates_connections(server: UvicornServer) -> None:
    async with Agent(max_requests_per_socket=3) as agent:
        connection_headers = [
            (await agent.get(f"{server.url}/echo")).json()["connection"] for _ in range(7)
        ]
        # The last request on each socket says so.
        assert connection_headers == [None, None, "close", None, None, "close", None]
        assert server.stats.opened == 3
        ports = server.stats.request_ports
        assert ports[0] == ports[1] == ports[2] != ports[3]
        assert await wait_until(lambda: server.stats.closed == 2)


async def test_all_http_method_helpers(server: UvicornServer) -> None:
    async with Agent() as agent:
        url = f"{server.url}/echo"
        for name in ("get", "post", "put", "patch", "delete", "options"):
            response = await getattr(agent, name)(url)
            assert response.json()["method"] == name.upper()
        head = await agent.head(url)
        assert head.status == 200
        assert head.content == b""
        assert server.stats.opened == 1
        assert server.stats.request_lines[-1] == "HEAD /echo"


async def test_stats_and_repr_describe_the_pool(server: UvicornServer) -> None:
    async with Agent() as agent:
        await agent.get(f"{server.url}/peer")
        stats = agent.stats()
        name = agent.get_name(f"{server.url}/anything?x=1")
        assert name == agent.get_name(f"{server.url}/peer")
        assert set(stats.origins) == {name}
        assert (stats.active, stats.idle, stats.queued) == (0, 1, 0)
        as_dict = stats.as_dict()
        assert json.loads(json.dumps(as_dict)) == as_dict
        assert as_dict["connections_created"] == 1
        text = repr(agent)
        assert "Agent" in text
        assert "1 idle" in text
        assert "0 queued" in text


async def test_response_fields(server: UvicornServer) -> None:
    async with Agent() as agent:
        url = f"{server.url}/echo?q=1"
        response = await agent.post(url, json={"a": [1, 2]}, headers={"X-Token": "t"})
        assert response.status == 200
        assert response.reason == "OK"
        assert response.http_version == "1.1"
        assert response.url == url
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["content-type"] == "application/json"
        echo = response.json()
        assert json.loads(echo["body"]) == {"a": [1, 2]}
        assert ["x-token", "t"] in echo["headers"]
        assert ["content-type", "application/json"] in echo["headers"]
        assert echo["query"] == "q=1"
        assert response.text == response.content.decode()
        assert await response.aread() == response.content
        await response.aclose()


async def test_headers_as_list_of_pairs_and_str_content(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.request(
            "PUT",
            f"{server.url}/echo",
            headers=[("X-Dup", "1"), ("X-Dup", "2")],
            content="héllo",
        )
        echo = response.json()
        assert [v for k, v in echo["headers"] if k == "x-dup"] == ["1", "2"]
        assert echo["body"].encode("latin-1").decode() == "héllo"
        lengths = [v for k, v in echo["headers"] if k == "content-length"]
        assert lengths == [str(len("héllo".encode()))]
        hosts = [v for k, v in echo["headers"] if k == "host"]
        assert hosts == [f"127.0.0.1:{server.port}"]
