"""Fixtures: the anyio backends and the test servers (see ``servers.py`` and, for nginx and
hypercorn, ``real_servers.py``); plugins: the socket-leak check every test passes (see
``socket_leaks.py``).

Servers are session-scoped and run in one background thread (nginx: in a child process); the
function-scoped fixtures reset their counters so each test counts only its own traffic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from proxies import TinyproxyServer, tinyproxy_binary
from real_servers import HypercornServer, NginxServer, nginx_binary
from servers import RawServer, ServerThread, TLSFiles, UvicornServer, tls_files

from starlette_agent import _wire_choice as wire_choice

# The socket-leak check (an autouse fixture) and pytester, which tests that check.
pytest_plugins = ["socket_leaks", "pytester"]


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
        # uvicorn[standard] runs apps on uvloop: the agent must work on its loop too.
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


#: Modules whose tests run once per HTTP parser: every agent behaviour test.
PARSER_MODULE_PREFIX = "test_agent_"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.startswith(PARSER_MODULE_PREFIX):
        metafunc.parametrize("http_parser", ["h11", "httptools"], indirect=True, scope="function")


@pytest.fixture(autouse=True)
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The parser ``Agent(http_parser="auto")`` picks in this test (agent tests run on both)."""
    choice = getattr(request, "param", None)
    if choice is not None:
        monkeypatch.setattr(wire_choice, "AUTO", choice)
    return choice


@pytest.fixture(scope="session")
def server_thread() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def tls() -> Iterator[TLSFiles]:
    with tls_files() as files:
        yield files


@pytest.fixture(scope="session")
def _uvicorn(server_thread: ServerThread) -> Iterator[UvicornServer]:
    server = UvicornServer(server_thread)
    yield server
    server.close()


@pytest.fixture(scope="session")
def _uvicorn2(server_thread: ServerThread) -> Iterator[UvicornServer]:
    server = UvicornServer(server_thread)
    yield server
    server.close()


@pytest.fixture(scope="session")
def _uvicorn_short_keep_alive(server_thread: ServerThread) -> Iterator[UvicornServer]:
    server = UvicornServer(server_thread, timeout_keep_alive=1)
    yield server
    server.close()


@pytest.fixture(scope="session")
def _uvicorn_tls(server_thread: ServerThread, tls: TLSFiles) -> Iterator[UvicornServer]:
    server = UvicornServer(server_thread, ssl_certfile=tls.certfile, ssl_keyfile=tls.keyfile)
    yield server
    server.close()


@pytest.fixture(scope="session")
def _raw(server_thread: ServerThread) -> Iterator[RawServer]:
    server = RawServer(server_thread)
    yield server
    server.close()


def _debian_binary(package: str, binary: str | None) -> str:
    """The program of a Debian package the tests need: CI (root) must have it, others skip."""
    if binary is None:
        if os.geteuid() == 0:
            pytest.fail(f"{package} is not installed: scripts/test installs the Debian package")
        pytest.skip(f"{package} is not installed, and only root can install it (scripts/test does)")
    return binary


@pytest.fixture(scope="session")
def _nginx() -> Iterator[NginxServer]:
    server = NginxServer(_debian_binary("nginx", nginx_binary()))
    yield server
    server.close()


def _tinyproxy_binary() -> str:
    return _debian_binary("tinyproxy", tinyproxy_binary())


@pytest.fixture(scope="session")
def _tinyproxy() -> Iterator[TinyproxyServer]:
    server = TinyproxyServer(_tinyproxy_binary())
    yield server
    server.close()


@pytest.fixture(scope="session")
def _tinyproxy_with_auth() -> Iterator[TinyproxyServer]:
    server = TinyproxyServer(_tinyproxy_binary(), user="alice", password="s3cret-Pa55")
    yield server
    server.close()


@pytest.fixture
def proxy_server(_tinyproxy: TinyproxyServer) -> TinyproxyServer:
    """Debian's tinyproxy on 127.0.0.1, any CONNECT port, counting from its log."""
    _tinyproxy.reset()
    return _tinyproxy


@pytest.fixture
def auth_proxy_server(_tinyproxy_with_auth: TinyproxyServer) -> TinyproxyServer:
    """tinyproxy wanting Basic credentials (``alice:s3cret-Pa55``, in its ``url``)."""
    _tinyproxy_with_auth.reset()
    return _tinyproxy_with_auth


@pytest.fixture(scope="session")
def _hypercorn(server_thread: ServerThread) -> Iterator[HypercornServer]:
    server = HypercornServer(server_thread, keep_alive_timeout=1)
    yield server
    server.close()


@pytest.fixture
def server(_uvicorn: UvicornServer) -> UvicornServer:
    """A uvicorn (keep-alive timeout 5 s) with counters reset for this test."""
    _uvicorn.reset()
    return _uvicorn


@pytest.fixture
def server2(_uvicorn2: UvicornServer) -> UvicornServer:
    """A second uvicorn: another origin."""
    _uvicorn2.reset()
    return _uvicorn2


@pytest.fixture
def short_keep_alive_server(_uvicorn_short_keep_alive: UvicornServer) -> UvicornServer:
    """A uvicorn that closes idle connections after 1 s (``timeout_keep_alive=1``)."""
    _uvicorn_short_keep_alive.reset()
    return _uvicorn_short_keep_alive


@pytest.fixture
def tls_server(_uvicorn_tls: UvicornServer) -> UvicornServer:
    """A uvicorn over TLS with a ``trustme`` certificate for 127.0.0.1 and localhost."""
    _uvicorn_tls.reset()
    return _uvicorn_tls


@pytest.fixture
def raw_server(_raw: RawServer) -> RawServer:
    """The scriptable fault server; set ``raw_server.handler`` in the test."""
    _raw.reset()
    return _raw


@pytest.fixture
def nginx_server(_nginx: NginxServer) -> NginxServer:
    """nginx (``keepalive_timeout 1s``, ``keepalive_requests 100``), counting from its access
    log, which it writes just after each response: wait for the counts."""
    _nginx.reset()
    return _nginx


@pytest.fixture
def hypercorn_server(_hypercorn: HypercornServer) -> HypercornServer:
    """hypercorn serving the uvicorn routes, closing idle connections after 1 s; it counts a
    connection at its first request."""
    _hypercorn.reset()
    return _hypercorn
