"""The test servers themselves: they must count what they see, or every other test lies."""

from __future__ import annotations

import socket
import struct

import anyio
import httpx
from real_servers import HypercornServer, NginxServer
from servers import RawConnection, RawServer, UvicornServer, response_bytes, wait_until_sync


def test_uvicorn_counts_one_keep_alive_connection(server: UvicornServer) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"{server.url}/peer").status_code == 200
        assert server.stats.opened == 1
        assert server.stats.requests == 3
        assert server.stats.open == 1
        assert len(set(server.stats.request_ports)) == 1
    assert wait_until_sync(lambda: server.stats.closed == 1)
    assert server.stats.open == 0


def test_uvicorn_routes(server: UvicornServer) -> None:
    with httpx.Client() as client:
        echo = client.post(f"{server.url}/echo?a=1", content=b"hi", headers={"X-T": "v"}).json()
        assert echo["method"] == "POST"
        assert echo["body"] == "hi"
        assert echo["query"] == "a=1"
        assert ["x-t", "v"] in echo["headers"]
        assert client.get(f"{server.url}/status/204").status_code == 204
        assert client.get(f"{server.url}/bytes/10").content == b"x" * 10
        assert client.get(f"{server.url}/id/abc?delay=0").content == b"abc"
        stream = client.get(f"{server.url}/stream/3")
        assert stream.text == "chunk-0\nchunk-1\nchunk-2\n"
        assert "content-length" not in stream.headers
        hint = client.get(f"{server.url}/keepalive-hint?timeout=3&max=100")
        assert hint.headers["keep-alive"] == "max=100, timeout=3"
        assert client.get(f"{server.url}/close").headers["connection"] == "close"
        # The server closed the connection itself, while the client still holds it.
        assert wait_until_sync(lambda: server.stats.open == 0)
        assert server.stats.closed == 1


def test_uvicorn_tls(tls_server: UvicornServer, tls: object) -> None:
    from servers import TLSFiles

    assert isinstance(tls, TLSFiles)
    with httpx.Client(verify=tls.client_context()) as client:
        assert client.get(f"{tls_server.url}/peer").status_code == 200
    assert tls_server.stats.requests == 1


def test_raw_server_runs_the_handler(raw_server: RawServer) -> None:
    async def handler(conn: RawConnection) -> None:
        request = await conn.read_request()
        assert request is not None
        await conn.send(response_bytes(request.body, headers=[("Connection", "close")]))

    raw_server.handler = handler
    with socket.create_connection(("127.0.0.1", raw_server.port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
    assert data.endswith(b"\r\n\r\nabc")
    assert raw_server.received[0].body == b"abc"
    assert wait_until_sync(lambda: raw_server.stats.closed == 1)
    assert raw_server.stats.opened == 1
    assert raw_server.stats.requests == 1


def test_raw_server_counts_clients_still_open_from_the_kernel(raw_server: RawServer) -> None:
    async def deaf(conn: RawConnection) -> None:
        await anyio.sleep(1)  # notices no close for a second: max_open lags behind the clients

    raw_server.handler = deaf
    first = [socket.create_connection(("127.0.0.1", raw_server.port)) for _ in range(3)]
    assert wait_until_sync(lambda: raw_server.stats.opened == 3)
    first[0].close()  # FIN
    first[1].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    first[1].close()  # RST
    with socket.create_connection(("127.0.0.1", raw_server.port)) as fourth:
        assert wait_until_sync(lambda: raw_server.stats.opened == 4)
        assert fourth.fileno() >= 0
    first[2].close()
    assert raw_server.stats.max_open == 4  # the server had noticed neither close
    assert raw_server.stats.max_client_open == 3  # but the kernel knew of both


def test_servers_can_count_without_logging_each_request(raw_server: RawServer) -> None:
    raw_server.stats.log_requests = False
    try:
        with httpx.Client() as client:
            assert client.get(f"{raw_server.url}/x").status_code == 200
    finally:
        raw_server.stats.log_requests = True
    assert raw_server.stats.requests == 1
    assert (raw_server.stats.request_lines, raw_server.received) == ([], [])


def test_nginx_counts_from_its_access_log(nginx_server: NginxServer) -> None:
    with httpx.Client() as client:
        ports = [int(client.get(f"{nginx_server.url}/peer").text) for _ in range(3)]
        assert client.get(nginx_server.file_url(10)).content == b"x" * 10
    with httpx.Client() as client:
        assert client.get(f"{nginx_server.url}/missing").status_code == 404
    assert wait_until_sync(lambda: nginx_server.stats.requests == 5)
    assert nginx_server.stats.opened == 2
    assert nginx_server.stats.request_ports[:4] == ports + ports[:1]
    assert nginx_server.stats.request_lines[-2:] == ["GET /files/10", "GET /missing"]
    assert nginx_server.stats.statuses == [200, 200, 200, 200, 404]
    nginx_server.reset()
    assert (nginx_server.stats.opened, nginx_server.stats.requests) == (0, 0)


def test_hypercorn_counts_a_connection_at_its_first_request(
    hypercorn_server: HypercornServer,
) -> None:
    with httpx.Client() as client:
        ports = [client.get(f"{hypercorn_server.url}/peer").json()["port"] for _ in range(3)]
    with httpx.Client() as client:
        echo = client.post(f"{hypercorn_server.url}/echo", content=b"hi").json()
    assert echo["body"] == "hi"
    assert hypercorn_server.stats.opened == 2
    assert hypercorn_server.stats.requests == 4
    assert hypercorn_server.stats.peer_ports == [ports[0], echo["client_port"]]
    assert hypercorn_server.stats.request_lines == ["GET /peer"] * 3 + ["POST /echo"]
