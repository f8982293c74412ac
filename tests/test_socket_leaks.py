"""The socket-leak check: it must see a leaked client socket, and only client sockets."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import pytest
from servers import UvicornServer
from socket_leaks import SocketLeakCheck, TcpSocket, collect_dropped_sockets


def _listener(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, 0), family=family)


def _the_one(leaked: list[TcpSocket]) -> TcpSocket:
    assert len(leaked) == 1, [str(sock) for sock in leaked]
    return leaked[0]


def test_reports_a_client_socket_and_not_the_server_side() -> None:
    check = SocketLeakCheck()
    with _listener() as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        try:
            leaked = _the_one(check.leaked())
            assert leaked.fd == client.fileno()
            assert leaked.local == client.getsockname()
            assert leaked.remote == ("127.0.0.1", port)
            assert leaked.state == "ESTABLISHED"
            assert f"127.0.0.1:{client.getsockname()[1]} -> 127.0.0.1:{port}" in str(leaked)
        finally:
            client.close()
            accepted.close()
        assert check.leaked() == []


def test_reports_a_client_socket_in_close_wait() -> None:
    check = SocketLeakCheck()
    with _listener() as listener, socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        accepted.close()  # the server hangs up; the client never closes its end
        assert check.wait_for_no_leaks(timeout=0.2)[0].state == "CLOSE_WAIT"
        assert _the_one(check.leaked()).fd == client.fileno()


def test_reports_a_reset_socket_missing_from_the_kernel_tables() -> None:
    check = SocketLeakCheck()
    listener = _listener()
    client = socket.create_connection(listener.getsockname())
    try:
        listener.close()  # never accepted: the kernel resets the queued connection
        leaked = _the_one(check.wait_for_no_leaks(timeout=0.2))
        assert leaked.fd == client.fileno()
        assert leaked.state == "CLOSE"
    finally:
        client.close()
    assert check.leaked() == []


def test_reports_ipv6_addresses() -> None:
    try:
        listener = _listener("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    check = SocketLeakCheck()
    with listener, socket.create_connection(("::1", listener.getsockname()[1])) as client:
        accepted, _ = listener.accept()
        with accepted:
            leaked = _the_one(check.leaked())
            assert leaked.local == client.getsockname()[:2]
            assert leaked.remote == ("::1", listener.getsockname()[1])
            assert str(leaked).startswith(f"[::1]:{client.getsockname()[1]} -> [::1]:")


def test_ignores_what_is_not_a_tcp_client() -> None:
    check = SocketLeakCheck()
    pair = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", 9))
    try:
        with _listener():
            assert check.leaked() == []
    finally:
        udp.close()
        for sock in pair:
            sock.close()


def test_sockets_open_before_the_baseline_are_not_leaks() -> None:
    with _listener() as listener, socket.create_connection(listener.getsockname()):
        check = SocketLeakCheck()
        with socket.create_connection(listener.getsockname()) as second:
            assert _the_one(check.leaked()).fd == second.fileno()


def test_the_uvicorn_server_sockets_are_not_clients(server: UvicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        check = SocketLeakCheck()
        client.sendall(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
        # uvicorn's accepted socket (opened after the baseline) is server-side.
        assert check.leaked() == []


def test_the_collector_names_a_dropped_asyncio_transport() -> None:
    with _listener() as listener:
        check = SocketLeakCheck()
        loop = asyncio.new_event_loop()
        gc.disable()  # the transport must be finalised by the collection under test, not before
        try:
            streams = loop.run_until_complete(asyncio.open_connection(*listener.getsockname()))
            loop.close()
            assert _the_one(check.leaked()).state == "ESTABLISHED"
            del streams, loop  # the transport and its protocol hold each other: garbage
            dropped = collect_dropped_sockets()
        finally:
            gc.enable()
        assert any(
            text.startswith("unclosed transport <_SelectorSocketTransport") for text in dropped
        )
        assert check.leaked() == []


# --------------------------------------------------------------------------- the fixture


@pytest.fixture
def client_closed_at_teardown() -> Iterator[socket.socket]:
    with _listener() as listener, socket.create_connection(listener.getsockname()) as client:
        yield client


def test_a_socket_closed_by_a_later_fixture_teardown_is_no_leak(
    client_closed_at_teardown: socket.socket,
) -> None:
    assert client_closed_at_teardown.fileno() >= 0


@pytest.fixture
async def async_client_closed_at_teardown() -> AsyncIterator[anyio.abc.SocketStream]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            yield client


@pytest.mark.anyio
async def test_a_socket_closed_by_an_async_fixture_teardown_is_no_leak(
    async_client_closed_at_teardown: anyio.abc.SocketStream,
) -> None:
    check = SocketLeakCheck()
    await anyio.sleep(0)
    assert check.leaked() == []  # the fixture's socket is in this check's baseline...
    assert async_client_closed_at_teardown.extra(anyio.abc.SocketAttribute.remote_port) > 0
    # ...and the autouse check, whose baseline predates the fixture, passes only if it runs
    # after the fixture's teardown and the event loop's end.


LEAKY_TESTS = """
import socket

import pytest

kept = []


def _connect():
    listener = socket.create_server(("127.0.0.1", 0))
    kept.append(listener)
    return socket.create_connection(listener.getsockname())


def test_leaks():
    kept.append(_connect())


def test_closes():
    _connect().close()


@pytest.mark.allow_socket_leak("kept for the next test")
def test_allowed():
    kept.append(_connect())


@pytest.mark.allow_socket_leak
def test_allowed_without_a_reason():
    pass


def test_zz_closes_what_the_others_kept():
    for sock in kept:
        sock.close()
"""


def test_a_leaking_test_errors_at_teardown_naming_the_test_and_the_socket(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_inprocess("-p", "socket_leaks", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.re_match_lines(
        [
            r".*ERROR at teardown of test_leaks.*",
            r".*test_leaky.py::test_leaks leaked client TCP sockets, open 1 s after its teardown:",
            r"  127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ ESTABLISHED \(fd \d+, inode \d+\)",
        ],
        consecutive=False,
    )
    result.stdout.re_match_lines([r".*ERROR at setup of test_allowed_without_a_reason.*"])
    result.stdout.no_fnmatch_line("*teardown of test_closes*")
    result.stdout.no_fnmatch_line("*teardown of test_allowed *")


DROPPING_TESTS = """
import socket

listeners = []


def _connect():
    listeners.append(socket.create_server(("127.0.0.1", 0)))
    return socket.create_connection(listeners[-1].getsockname())


def test_drops_a_socket():
    _connect()  # never closed: the last reference goes, and Python closes it with a warning


def test_drops_a_socket_in_a_cycle():
    cycle = [_connect()]
    cycle.append(cycle)  # only the garbage collector frees it


def test_zz_closes_the_listeners():
    for listener in listeners:
        listener.close()
"""


def test_a_socket_left_to_the_garbage_collector_fails_the_test_that_dropped_it(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    # The project's own warning filters, which make "unclosed socket" an error.
    filters = "".join(f"\n    {line}" for line in request.config.getini("filterwarnings"))
    pytester.makeini(f"[pytest]\nfilterwarnings ={filters}\n")
    pytester.makepyfile(test_dropping=DROPPING_TESTS)
    result = pytester.runpytest_inprocess("-p", "socket_leaks", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_socket_in_a_cycle*",
            "test_dropping.py::test_drops_a_socket_in_a_cycle leaked client TCP sockets, open 1 s"
            " after its teardown:",
            "  127.0.0.1:* -> 127.0.0.1:* ESTABLISHED (fd *, inode *)",
            "  then closed by the garbage collector, nobody else: unclosed <socket.socket *"
            " proto=6, laddr=('127.0.0.1', *",
            "*_ test_drops_a_socket _*",
            "*Exception ignored in: <socket.socket * proto=6, laddr=('127.0.0.1', *",
        ]
    )


@pytest.mark.anyio
async def test_settled_waits_inside_the_event_loop() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        check = SocketLeakCheck()
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        try:
            leaked = _the_one(await check.settled(timeout=0.05))
            assert leaked.remote == ("127.0.0.1", port)
        finally:
            await client.aclose()
        assert await check.settled() == []
