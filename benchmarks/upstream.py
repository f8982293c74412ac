"""The server every client talks to: a bare asyncio server in a process of its own.

It answers fixed, prebuilt responses and does nothing else, so that nearly all the CPU a run
spends in the client's process is the client's own. Routes, by path:

* ``/small``: 200 with a 2-byte body;
* ``/large``: 200 with a 1 MiB body;
* ``/close/small``, ``/close/large``: the same, with ``Connection: close``, and the socket closed
  after the response: every request then needs a new connection.

A connection carries any number of requests (keep-alive) unless the route or the request says
``Connection: close``. Requests are GETs without bodies: a request ends at its blank line.

    python -m benchmarks.upstream        # prints the port it listens on, then serves
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

SMALL_BODY = b"ok"
LARGE_BODY = b"x" * (1024 * 1024)
BODIES = {"small": SMALL_BODY, "large": LARGE_BODY}
ROOT = Path(__file__).resolve().parents[1]


def path_for(body: str, *, close: bool) -> str:
    """The route that answers ``body`` ("small" or "large"), closing after it if ``close``."""
    return f"/close/{body}" if close else f"/{body}"


def _response(body: bytes, *, close: bool) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Server: benchmark-upstream\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


ROUTES: dict[bytes, tuple[bytes, bool]] = {
    path_for(name, close=close).encode(): (_response(body, close=close), close)
    for name, body in BODIES.items()
    for close in (False, True)
}
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            response, close = ROUTES.get(path, (NOT_FOUND, True))
            self.transport.write(response)
            if close or b"\r\nconnection: close" in head.lower():
                self.transport.close()  # after the buffered response is written
                return


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@contextmanager
def running_upstream() -> Iterator[str]:
    """Start the upstream in a child process; yield its base URL (``http://127.0.0.1:PORT``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    try:
        import uvloop  # the upstream's own speed only shortens the runs; it is not measured
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
