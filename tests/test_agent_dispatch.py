"""``Agent.dispatch``: the public method every request goes through, against a real server."""

from __future__ import annotations

import json
import ssl

import pytest
from helpers import assert_settled
from servers import UvicornServer, wait_until

import starlette_agent
from starlette_agent import (
    Agent,
    AgentClosed,
    InvalidOption,
    InvalidOptionType,
    InvalidRequest,
    ReadTimeout,
    Request,
    Response,
    Timeouts,
)

pytestmark = pytest.mark.anyio


class Recording(Agent):
    """A subclass that sees each request through the public seam, and adds a header."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def dispatch(self, request: Request) -> Response:
        self.seen.append(f"{request.method} {request.target.decode()}")
        tagged = self.build_request(
            request.method,
            request.url,
            headers=[*request.raw_headers, (b"x-dispatched", b"yes")],
            content=request.body,
            timeout=request.timeouts,
        )
        return await super().dispatch(tagged)


async def test_every_way_of_sending_goes_through_dispatch(server: UvicornServer) -> None:
    url = f"{server.url}/echo"
    async with Recording() as agent:
        await agent.request("PUT", url, content=b"a")
        for verb in (agent.get, agent.head, agent.options, agent.post, agent.patch, agent.delete):
            await verb(url)
        async with agent.stream("GET", url) as streamed:
            body = await streamed.aread()
        await starlette_agent.request("GET", url, agent=agent)
    assert agent.seen == [
        "PUT /echo",
        "GET /echo",
        "HEAD /echo",
        "OPTIONS /echo",
        "POST /echo",
        "PATCH /echo",
        "DELETE /echo",
        "GET /echo",
        "GET /echo",
    ]
    assert ["x-dispatched", "yes"] in json.loads(body)["headers"]
    assert server.stats.requests == 9


async def test_dispatch_returns_the_response_with_its_body_unread(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.dispatch(agent.build_request("GET", f"{server.url}/bytes/10"))
        assert response.status == 200
        assert agent.stats().active == 1  # the caller holds the socket until it reads the body
        assert await response.aread() == b"x" * 10
        assert_settled(agent)
        assert agent.stats().idle == 1

        unread = await agent.dispatch(agent.build_request("GET", f"{server.url}/bytes/10"))
        await unread.aclose()  # closing an unread body closes its socket
        assert agent.stats().idle == 0
    assert await wait_until(lambda: server.stats.closed == 1)


async def test_a_request_carries_its_headers_as_sent_and_its_settings() -> None:
    context = ssl.create_default_context()
    request = Request(
        "post",
        "http://user:pw@example.test:8080/a?b=1",
        json={"x": 1},
        timeout=2,
        ssl_context=context,
    )
    assert (request.method, request.target) == ("POST", b"/a?b=1")
    assert str(request.origin) == "http://example.test:8080"
    assert request.headers["host"] == "example.test:8080"
    assert request.headers["authorization"].startswith("Basic ")
    assert request.headers["content-length"] == "7"
    assert request.body == b'{"x":1}'
    assert request.timeouts == Timeouts.all(2)
    assert request.ssl_context is context
    assert repr(request) == "<Request POST http://user:[secure]@example.test:8080/a?b=1>"
    assert Request("GET", "http://example.test/").timeouts is None  # the agent's own


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        ("5", InvalidOptionType),
        (True, InvalidOptionType),
        (0, InvalidOption),
        (-1, InvalidOption),
        (float("nan"), InvalidOption),
        (float("inf"), InvalidOption),
    ],
)
async def test_a_bad_timeout_is_an_invalid_option_before_any_io(
    timeout: object, error: type[InvalidOption], server: UvicornServer
) -> None:
    async with Agent() as agent:
        with pytest.raises(error, match="timeout must be a number of seconds") as caught:
            agent.build_request("GET", "http://example.test/", timeout=timeout)  # type: ignore[arg-type]
        assert caught.value.option == "timeout"
        with pytest.raises(error, match="timeout must be a number of seconds"):
            await agent.get(server.url, timeout=timeout)  # type: ignore[arg-type]
        assert agent.stats().requests == 0
    assert server.stats.opened == 0


async def test_a_timeouts_phase_is_checked_too() -> None:
    phases = Timeouts(connect=5, read=-1, write=5, pool=None, headers=None)
    with pytest.raises(InvalidOption, match=r"Timeouts\.read must be a number of seconds > 0"):
        Request("GET", "http://example.test/", timeout=phases)


async def test_build_request_validates_like_request(server: UvicornServer) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest, match="no scheme"):
            agent.build_request("GET", "example.test/")
        with pytest.raises(InvalidRequest, match="Transfer-Encoding is set by the agent"):
            agent.build_request("GET", server.url, headers={"transfer-encoding": "chunked"})
        assert agent.stats().requests == 0


async def test_per_phase_timeouts_travel_on_the_request(server: UvicornServer) -> None:
    phases = Timeouts(connect=5, read=0.05, write=5, pool=5, headers=None)
    async with Agent(read_timeout=30) as agent:
        request = agent.build_request("GET", f"{server.url}/slow?delay=2", timeout=phases)
        with pytest.raises(ReadTimeout, match=r"within 0\.05s"):
            await agent.dispatch(request)
        assert agent.stats().errors == 1


async def test_dispatch_after_aclose_raises_agent_closed(server: UvicornServer) -> None:
    agent = Agent()
    request = agent.build_request("GET", f"{server.url}/echo")
    await (await agent.dispatch(request)).aread()
    await agent.aclose()
    with pytest.raises(AgentClosed, match="the agent was closed"):
        await agent.dispatch(request)
    assert server.stats.requests == 1
