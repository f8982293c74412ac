"""The test servers themselves: they must count what they see, or every other test lies."""

from __future__ import annotations

import socket

import httpx
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
