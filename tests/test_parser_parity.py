"""Both parsers end alike at the agent: the same server answer, sent over a real loopback socket
to an agent on h11 and to one on httptools, gives the same outcome class from each: a response
with the same status and body, or the same ``AgentError`` subclass. The next request on each
agent must then fare alike too, which compares the keep-alive decision (was the socket reused?).

The answers are arbitrary: valid and invalid heads, each framing, chunked bodies, bytes after
the response, bodies cut short, and the connection closed, reset or held open after them.
``AGENT_PARITY_EXAMPLES`` raises the example count (CI runs a few hundred), on asyncio, trio
and uvloop.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import anyio
from answer_strategies import http_answers
from faults import reset
from helpers import assert_settled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import RawConnection, RawServer, keep_alive_handler

from starlette_agent import Agent, AgentError

STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 201 Created",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 999 Odd",
    b"HTTP/1.1 200",
    b"HTTP/2 200",
    b"http/1.1 200 ok",
    b"HTTP/1.1 20 OK",
    b"",
]
HEADER_LINES = [
    b"Content-Length: 5",
    b"Content-Length: 2",
    b"Content-Length: 0",
    b"Content-Length: 50",
    b"Content-Length: -1",
    b"Content-Length: x",
    b"Content-Length: 5, 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked",
    b"Content-Encoding: gzip",
    b"Content-Encoding: identity",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Keep-Alive: timeout=0",
    b"Keep-Alive: timeout=abc",
    b"X: a\x00b",
    b"X: tab\there",
    b"No colon",
    b" folded",
    b"X-Long: " + b"a" * 1000,
]
BODIES = [
    b"",
    b"hello",
    b"ok",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"2\r\nok\r\n",  # a chunked body cut short
    b"zz\r\n",
    b"0\r\n\r\n",
    b"hello\r\n\r\n",  # blank lines after a 5-byte body
    b"helloHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",  # a second answer, unasked
]
#: What the server does once its answer is sent.
AFTER = ["close", "reset", "serve"]
READ_TIMEOUT = 0.15


answers = http_answers(STATUS_LINES, HEADER_LINES, BODIES, any_body=True)


@dataclass(frozen=True)
class Outcome:
    """What a request came to: a response's status and body, or the error's class."""

    status: int | None = None
    body: bytes = b""
    error: type[AgentError] | None = None
    reused: bool | None = None  # for the request after: whether its socket was kept


async def outcome_of(agent: Agent, url: str, method: str) -> Outcome:
    try:
        response = await agent.request(method, url)
    except AgentError as exc:
        return Outcome(error=type(exc))
    return Outcome(response.status, response.content, reused=response.reused_socket)


class Answering:
    """A handler: the first connection gets ``answer`` (in two writes, split at ``cut``) and
    then what ``after`` says; every later connection is served ``ok``, kept alive. ``sent``
    is set once the whole answer was sent (or could not be)."""

    def __init__(self, answer: bytes, cut: int, after: str) -> None:
        self.answer = answer
        self.split = cut % (len(answer) + 1)
        self.after = after
        self.sent = threading.Event()

    async def __call__(self, conn: RawConnection) -> None:
        if conn.index > 0:
            await keep_alive_handler(conn)
            return
        try:
            if await conn.read_request() is None:
                return
            await conn.send(self.answer[: self.split])
            if self.split < len(self.answer):
                await anyio.sleep(0.002)  # most often a read of its own
                await conn.send(self.answer[self.split :])
        finally:
            self.sent.set()
        if self.after == "reset":
            await anyio.sleep(0.03)  # the client reads what was sent before the reset
            await reset(conn)
        elif self.after == "serve":
            await keep_alive_handler(conn)

    async def wait_sent(self) -> None:
        """Until every byte of the answer is in: bytes a server sends after the client reused
        the socket are the next answer's, and would make the next request's outcome a race."""
        while not self.sent.is_set():
            await anyio.sleep(0.001)
        await anyio.sleep(0.01)


async def run_on(
    http_parser: str, raw_server: RawServer, answer: bytes, cut: int, after: str, method: str
) -> tuple[Outcome, Outcome]:
    """The outcome of a request answered with ``answer``, and of the next request after it."""
    raw_server.reset()
    raw_server.handler = handler = Answering(answer, cut, after)
    async with Agent(http_parser=http_parser, read_timeout=READ_TIMEOUT, max_sockets=1) as agent:
        with anyio.fail_after(5):
            first = await outcome_of(agent, raw_server.url, method)
            assert_settled(agent)
            await handler.wait_sent()
            then = await outcome_of(agent, raw_server.url, "GET")
    return first, then


@settings(
    max_examples=int(os.environ.get("AGENT_PARITY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    answer=answers,
    cut=st.integers(0, 400),
    after=st.sampled_from(AFTER),
    method=st.sampled_from(["GET", "GET", "HEAD"]),
)
def test_both_parsers_end_an_answer_alike(
    anyio_backend: str | tuple[str, dict[str, object]],
    raw_server: RawServer,
    answer: bytes,
    cut: int,
    after: str,
    method: str,
) -> None:
    async def scenario() -> tuple[tuple[Outcome, Outcome], tuple[Outcome, Outcome]]:
        by_h11 = await run_on("h11", raw_server, answer, cut, after, method)
        by_llhttp = await run_on("httptools", raw_server, answer, cut, after, method)
        return by_h11, by_llhttp

    # On each event loop in turn (conftest's anyio_backend: asyncio, trio, uvloop).
    backend, options = anyio_backend if isinstance(anyio_backend, tuple) else (anyio_backend, {})
    by_h11, by_llhttp = anyio.run(scenario, backend=backend, backend_options=options)
    assert by_h11 == by_llhttp, (answer, cut, after, method)
    # The request after is always answered: whatever the first one left, it was not reused.
    assert by_h11[1].status == 200
