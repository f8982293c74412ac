"""Whatever bytes a server answers with, the agent returns a response or raises an AgentError,
never hangs, never reuses a socket in doubt, and keeps working afterwards."""

from __future__ import annotations

import anyio
from helpers import assert_settled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import RawConnection, RawServer, keep_alive_handler

from starlette_agent import Agent, AgentError, Response

STATUS_LINES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 200 OK",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 999 Odd",
        b"HTTP/2 200",
        b"http/1.1 200 ok",
        b"",
    ]
)
HEADER_LINES = st.lists(
    st.sampled_from(
        [
            b"Content-Length: 5",
            b"Content-Length: 0",
            b"Content-Length: -1",
            b"Content-Length: x",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip",
            b"Connection: close",
            b"Keep-Alive: timeout=0",
            b"Keep-Alive: timeout=abc",
            b"X: a\x00b",
            b"No colon",
            b" folded",
            b"X-Long: " + b"a" * 1000,
        ]
    ),
    max_size=4,
)
BODIES = st.one_of(
    st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"0\r\n\r\n"]),
    st.binary(max_size=64),
)


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))  # pure noise
    head = b"\r\n".join([draw(STATUS_LINES), *draw(HEADER_LINES)])
    return head + b"\r\n\r\n" + draw(BODIES)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(answer=responses(), close_after=st.booleans())
def test_any_answer_ends_in_a_response_or_an_agent_error(
    raw_server: RawServer, answer: bytes, close_after: bool
) -> None:
    async def handler(conn: RawConnection) -> None:
        if await conn.read_request() is None:
            return
        await conn.send(answer)
        if not close_after:
            # Silent for longer than the read timeout, then a well-behaved keep-alive server.
            await anyio.sleep(0.3)
            await keep_alive_handler(conn)

    async def scenario() -> None:
        raw_server.handler = handler
        async with Agent(read_timeout=0.2, max_sockets=1) as agent:
            with anyio.fail_after(5):
                try:
                    response = await agent.get(raw_server.url)
                except AgentError:
                    pass
                else:
                    assert isinstance(response, Response)
                    assert 100 <= response.status <= 999
            assert_settled(agent)
            # Whatever happened, the next request on the same agent gets a clean answer: a
            # socket left in doubt was not reused.
            raw_server.handler = keep_alive_handler
            with anyio.fail_after(5):
                healthy = await agent.get(raw_server.url, timeout=2)
            assert (healthy.status, healthy.content) == (200, b"ok")

    anyio.run(scenario)
