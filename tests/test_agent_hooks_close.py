"""``connection_closed``: each reason a socket is closed for, against real servers."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from recording_hooks import Recorder, check_lifecycles
from servers import RawConnection, RawServer, UvicornServer, wait_until, wait_until_sync
from socket_leaks import open_tcp_sockets

from starlette_agent import Agent, RemoteProtocolError

pytestmark = pytest.mark.anyio


async def _closed_once(recorder: Recorder) -> tuple[str, bool]:
    await wait_until(lambda: len(recorder.of("connection_closed")) == 1)
    [event] = recorder.of("connection_closed")
    return event.reason, event.idle


def _kernel_state(local_port: int) -> str | None:
    """The TCP state of this process's socket on ``local_port``; None when it has none."""
    states = [sock.state for sock in open_tcp_sockets() if sock.local[1] == local_port]
    return states[0] if states else None


async def test_idle_timeout(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, idle_timeout=0.2) as agent:
        await agent.get(f"{server.url}/peer")
        assert await _closed_once(recorder) == ("idle_timeout", True)
        assert await wait_until(lambda: server.stats.closed == 1)
        assert agent.stats().idle_timeouts == 1


async def test_keep_alive_hint_running_out(server: UvicornServer) -> None:
    recorder = Recorder()
    # Keep-Alive: timeout=1.3, less the 1 s buffer: kept 0.3 s, not the agent's 10.
    async with Agent(hooks=recorder, idle_timeout=10) as agent:
        await agent.get(f"{server.url}/keepalive-hint?timeout=1.3")
        assert await _closed_once(recorder) == ("keep_alive_hint", True)


async def test_keep_alive_hint_leaving_no_time(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        await agent.get(f"{server.url}/keepalive-hint?timeout=1")
        assert await _closed_once(recorder) == ("keep_alive_hint", False)
        assert recorder.of("connection_released") == []


async def test_a_socket_closed_when_found_expired_at_checkout(server: UvicornServer) -> None:
    """The reaper may not have woken yet: the request that finds the socket expired closes it,
    and says why as the reaper would."""
    recorder = Recorder()
    async with Agent(hooks=recorder, idle_timeout=10) as agent:
        await agent.get(f"{server.url}/keepalive-hint?timeout=1.05")  # kept 50 ms
        await anyio.sleep(0.06)
        response = await agent.get(f"{server.url}/peer")
        assert not response.reused_socket
        assert recorder.reasons()[0] == "keep_alive_hint"


async def test_max_requests(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_requests_per_socket=2) as agent:
        await agent.get(f"{server.url}/peer")
        await agent.get(f"{server.url}/peer")
        [closed] = recorder.of("connection_closed")
        assert (closed.reason, closed.idle, closed.requests) == ("max_requests", False, 2)


async def test_keep_alive_off(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, keep_alive=False) as agent:
        await agent.get(f"{server.url}/peer")
        assert recorder.reasons() == ["keep_alive_off"]


async def test_server_asking_to_close(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        await agent.get(f"{server.url}/close")
        assert await _closed_once(recorder) == ("server_closed", False)


async def test_server_closing_an_idle_socket(short_keep_alive_server: UvicornServer) -> None:
    server = short_keep_alive_server
    recorder = Recorder()
    async with Agent(hooks=recorder, idle_timeout=10) as agent:
        first = await agent.get(f"{server.url}/peer")
        assert await wait_until(lambda: server.stats.closed == 1, timeout=5)
        # The server counts a close just before its socket is shut: until the FIN has reached
        # this side, the socket looks alive, and would be reused (and fail) rather than found
        # closed while idle.
        port = first.json()["port"]
        assert await wait_until(lambda: _kernel_state(port) in ("CLOSE_WAIT", None), timeout=5)
        response = await agent.get(f"{server.url}/peer")
        assert not response.reused_socket
        assert await _closed_once(recorder) == ("server_closed", True)


async def test_max_free_sockets_reached(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_free_sockets=0) as agent:
        await agent.get(f"{server.url}/peer")
        assert await _closed_once(recorder) == ("pool_limit", False)


async def test_room_made_for_another_origin(server: UvicornServer, server2: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_total_sockets=1) as agent:
        await agent.get(f"{server.url}/peer")
        await agent.get(f"{server2.url}/peer")  # evicts the idle socket to the first server
        [closed] = recorder.of("connection_closed")
        assert (closed.reason, closed.idle) == ("pool_limit", True)
        assert closed.pool_key == agent.get_name(server.url)


async def test_a_body_left_unread(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        async with agent.stream("GET", f"{server.url}/stream/100") as response:
            await response.aiter_bytes().__anext__()
        assert await _closed_once(recorder) == ("unread_body", False)


async def test_an_exchange_that_failed(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")  # and close

    raw_server.handler = handler
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        with pytest.raises(RemoteProtocolError):
            await agent.get(raw_server.url)
        assert recorder.reasons() == ["error"]


async def test_a_request_cancelled_mid_body(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder) as agent:
        with anyio.move_on_after(0.2):
            async with agent.stream("GET", f"{server.url}/stream/10?interval=1") as response:
                async for _ in response.aiter_bytes():
                    pass
        assert recorder.reasons() == ["cancelled"]
        assert [end.status for end in recorder.of("request_end")] == [200]


async def test_the_agent_closing_sockets_idle_and_in_use(server: UvicornServer) -> None:
    recorder = Recorder()
    agent = Agent(hooks=recorder)
    url = f"{server.url}/stream/1"
    async with agent.stream("GET", url) as one, agent.stream("GET", url) as two:
        await one.aread()
        await two.aread()
    assert agent.stats().idle == 2
    async with agent.stream("GET", url):
        await agent.aclose()  # one socket idle, one carrying the stream
    closed = recorder.of("connection_closed")
    assert sorted((event.reason, event.idle) for event in closed) == [
        ("agent_closed", False),
        ("agent_closed", True),
    ]
    # Each is reported once, though the stream also let go of its socket as it ended.
    assert len({event.connection_id for event in closed}) == 2
    check_lifecycles(recorder)


async def test_close_reasons_are_told_once_each_under_churn(server: UvicornServer) -> None:
    recorder = Recorder()
    async with Agent(hooks=recorder, max_sockets=2, max_requests_per_socket=3) as agent:
        for _ in range(30):
            await agent.get(f"{server.url}/peer")
    stats = agent.stats()
    assert len(recorder.of("connection_closed")) == stats.connections_closed == 10
    assert recorder.reasons() == ["max_requests"] * 10
    check_lifecycles(recorder)


def test_the_event_loop_ending(server: UvicornServer) -> None:
    recorder = Recorder()
    agent = Agent(hooks=recorder, idle_timeout=None)

    async def main() -> None:
        await agent.get(f"{server.url}/peer")

    asyncio.run(main())
    assert recorder.reasons() == ["event_loop_closed"]
    [closed] = recorder.of("connection_closed")
    assert closed.idle
    assert wait_until_sync(lambda: server.stats.closed == 1)
    check_lifecycles(recorder)
