"""Every fault of the catalogue (``faults.py``), on asyncio, uvloop and trio.

For each fault: the caller gets exactly what the catalogue says (the status and whole body, or
the exact error naming the origin); the agent is settled and kept no socket in doubt (the server
holds no connection the pool does not hold idle); the agent still serves the same server's
healthy route; and no client socket leaks (the autouse leak check).
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import pytest
from faults import FAULTS, Answer, Fault, SocketHandler
from helpers import assert_settled
from servers import RawServer, SocketServer, wait_until

from starlette_agent import Agent, AgentError, Response

pytestmark = pytest.mark.anyio


class OpenConnections:
    """Counts a ``SocketServer``'s connections whose handler has not returned yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def track(self, handler: SocketHandler) -> SocketHandler:
        def tracked(conn: socket.socket) -> None:
            with self._lock:
                self.open += 1
            try:
                handler(conn)
            finally:
                with self._lock:
                    self.open -= 1

        return tracked


@dataclass
class Upstream:
    url: str
    open: Callable[[], int]  # connections the server holds open right now
    errors: list[BaseException]  # what its handlers raised


@contextmanager
def serving(fault: Fault, raw_server: RawServer) -> Iterator[Upstream]:
    """The fault's server."""
    if fault.handler is not None:
        raw_server.handler = fault.handler
        yield Upstream(raw_server.url, lambda: raw_server.stats.open, raw_server.errors)
        return
    assert fault.socket_handler is not None
    connections = OpenConnections()
    server = SocketServer(connections.track(fault.socket_handler))
    try:
        yield Upstream(server.url, lambda: connections.open, server.errors)
    finally:
        server.close()


async def send(agent: Agent, fault: Fault, url: str) -> Response | AgentError:
    try:
        return await agent.request(fault.method, f"{url}/fault", content=fault.content)
    except AgentError as exc:
        return exc


def assert_outcome(fault: Fault, outcome: Response | AgentError, origin: str) -> None:
    expect = fault.expect
    if isinstance(expect, Answer):
        assert isinstance(outcome, Response), f"{fault}: expected {expect}, got {outcome!r}"
        assert (outcome.status, outcome.content) == (expect.status, expect.body)
        return
    assert type(outcome) is expect.error, f"{fault}: expected {expect}, got {outcome!r}"
    message = str(outcome)
    assert re.search(expect.match, message), message
    assert origin in message
    assert outcome.origin == origin


@pytest.mark.parametrize("fault", FAULTS, ids=str)
async def test_fault(fault: Fault, raw_server: RawServer) -> None:
    with serving(fault, raw_server) as upstream:
        url = upstream.url
        async with Agent(**fault.options) as agent:
            with anyio.fail_after(10):
                for _ in range(fault.warm_up):
                    warm = await agent.get(f"{url}/fault")
                    assert (warm.status, warm.content) == (200, b"ok")
                await anyio.sleep(fault.pause)
                outcome = await send(agent, fault, url)

            assert_outcome(fault, outcome, url)

            assert_settled(agent)
            stats = agent.stats()
            assert stats.idle == fault.kept_idle, stats.as_dict()
            assert stats.retries == fault.retries, stats.as_dict()
            # The socket in doubt is closed, not just forgotten: the server sees it go.
            assert await wait_until(lambda: upstream.open() <= agent.stats().idle), upstream.open()

            with anyio.fail_after(10):
                for _ in range(3):
                    healthy = await agent.get(f"{url}/ok")
                    assert (healthy.status, healthy.content) == (200, b"ok")
            assert_settled(agent)
    assert upstream.errors == []


def test_the_catalogue_is_whole() -> None:
    names = [fault.name for fault in FAULTS]
    assert len(names) == len(set(names))
    for fault in FAULTS:
        assert (fault.handler is None) != (fault.socket_handler is None), fault
