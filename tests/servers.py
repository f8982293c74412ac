"""Servers the tests talk to, each counting what it saw.

Every server runs on 127.0.0.1, on an ephemeral port, inside one background thread with its own
asyncio event loop (``ServerThread``). The client under test may therefore run on asyncio or trio,
and a client bug that blocks its own loop can never stall the server.

* ``UvicornServer``: a real uvicorn whose HTTP protocol is ``CountingH11Protocol``, a subclass
  of uvicorn's ``H11Protocol`` that counts connections and requests server-side. Its app
  (``echo_app``) offers the routes the behaviour tests need (see its docstring).
* ``RawServer``: an anyio TCP listener that hands each connection to a per-test ``handler``
  coroutine, for faults no real server would commit. ``RawConnection.read_request`` parses one
  request; the handler writes whatever bytes it likes.

Both expose ``.url``, ``.port`` and ``.stats`` (``ServerStats``); fixtures ``reset()`` them between
tests. Counters are updated on the server thread and read from the test thread; ``wait_until``
polls them from the client's loop, so a test can wait for "the server saw the close".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.abc
import anyio.from_thread
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- counting


class ServerStats:
    """What a server saw, server-side. Thread-safe; ``reset()`` between tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._linked: list[ServerStats] = []
        # Off for load runs: the per-request lists below would grow with every request.
        self.log_requests = True
        self.reset()

    def link(self, combined: ServerStats) -> None:
        """Also report connections to ``combined``: counts across several servers."""
        self._linked.append(combined)

    def reset(self) -> None:
        """Count afresh. Connections and requests of earlier tests are forgotten: a server may
        notice a client's close only when its handler finishes, long after that test ended."""
        with self._lock:
            self.generation = getattr(self, "generation", 0) + 1
            self._open = set()
            self.opened = 0
            self.closed = 0
            self.max_open = 0
            # RawServer only: the most connections whose client had not yet closed them, at any
            # accept. Read from the kernel, so it does not depend on when the server got round to
            # noticing a close (max_open does).
            self.max_client_open = 0
            self.requests = 0
            self.peer_ports: list[int] = []  # client port of each connection, in order of accept
            self.request_ports: list[int] = []  # client port of each request, in order
            self.request_lines: list[str] = []  # "GET /path", in order
            self.in_flight = 0  # uvicorn only: requests whose response is not yet complete
            self.max_in_flight = 0
            self._linked = []

    @property
    def open(self) -> int:
        """Connections opened since ``reset()`` and open right now."""
        with self._lock:
            return len(self._open)

    def connection_opened(self, key: int, port: int) -> None:
        with self._lock:
            self._open.add(key)
            self.opened += 1
            self.max_open = max(self.max_open, len(self._open))
            self.peer_ports.append(port)
            linked = list(self._linked)
        for combined in linked:
            combined.connection_opened(key, port)

    def connection_closed(self, key: int) -> None:
        with self._lock:
            if key not in self._open:
                return
            self._open.discard(key)
            self.closed += 1
            linked = list(self._linked)
        for combined in linked:
            combined.connection_closed(key)

    def client_open_at_accept(self, count: int) -> None:
        with self._lock:
            self.max_client_open = max(self.max_client_open, count)

    def request_received(self, port: int, line: str) -> None:
        with self._lock:
            self.requests += 1
            if self.log_requests:
                self.request_ports.append(port)
                self.request_lines.append(line)

    def response_started(self) -> list[tuple[ServerStats, int]]:
        """Count a request in flight; returns the tokens to pass to ``response_ending``."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            tokens = [(self, self.generation)]
            linked = list(self._linked)
        for combined in linked:
            tokens += combined.response_started()
        return tokens

    @staticmethod
    def response_ending(tokens: list[tuple[ServerStats, int]]) -> None:
        for stats, generation in tokens:
            with stats._lock:
                if generation == stats.generation:  # not a request of an earlier test
                    stats.in_flight -= 1

    def __repr__(self) -> str:
        return (
            f"<ServerStats opened={self.opened} closed={self.closed} open={self.open} "
            f"max_open={self.max_open} requests={self.requests}>"
        )


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` from the calling event loop until it holds or ``timeout`` passes.

    Returns the last value, so tests write ``assert await wait_until(lambda: ...)``.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        await anyio.sleep(interval)
    return True


def wait_until_sync(predicate: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.01)
    return True


# --------------------------------------------------------------------------- server thread


class ServerThread:
    """One background thread running an asyncio loop that hosts every test server."""

    def __init__(self) -> None:
        self._exit_stack = contextlib.ExitStack()
        self.portal = self._exit_stack.enter_context(
            anyio.from_thread.start_blocking_portal("asyncio")
        )

    def close(self) -> None:
        self._exit_stack.close()


# --------------------------------------------------------------------------- uvicorn


def counting_protocol(stats: ServerStats) -> type[H11Protocol]:
    """A uvicorn ``H11Protocol`` subclass that reports to ``stats``."""

    class CountingH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            inner_app = self.app

            async def counting_app(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await inner_app(scope, receive, send)
                    return
                client = scope.get("client") or ("", 0)
                stats.request_received(client[1], f"{scope['method']} {scope['path']}")
                tokens = stats.response_started()
                ended = False

                async def counting_send(message: Any) -> None:
                    nonlocal ended
                    last = message["type"] == "http.response.body" and not message.get(
                        "more_body", False
                    )
                    if last and not ended:
                        # Counted before the last bytes leave: the client cannot send its next
                        # request before this one stops counting as in flight.
                        ended = True
                        ServerStats.response_ending(tokens)
                    await send(message)

                try:
                    await inner_app(scope, receive, counting_send)
                finally:
                    if not ended:
                        ServerStats.response_ending(tokens)

            self.app = counting_app

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            stats.connection_opened(id(self), self.client[1] if self.client else 0)

        def connection_lost(self, exc: Exception | None) -> None:
            stats.connection_closed(id(self))
            super().connection_lost(exc)

    return CountingH11Protocol


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def _send(
    send: Any, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = list(headers or [])
    if status not in (204, 304) and not any(k == b"content-length" for k, _ in all_headers):
        all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


async def _send_in_pieces(
    send: Any, body: bytes, headers: list[tuple[bytes, bytes]], piece: int
) -> None:
    """The body in ``piece``-byte messages (chunked on the wire), or at once if 0."""
    if not piece:
        await _send(send, 200, body, headers)
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for start in range(0, len(body), piece):
        chunk = body[start : start + piece]
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def encoded_body(lines: int) -> bytes:
    """What ``/encoded/...`` sends before encoding: numbered lines, some of them not ASCII."""
    return "".join(f"line {i}: caf\u00e9 {'x' * (i % 50)}\n" for i in range(lines)).encode()


def encode(body: bytes, codings: list[str]) -> bytes:
    """``body`` with each coding applied in turn, reproducibly (no timestamp in gzip)."""
    for coding in codings:
        if coding == "gzip":
            body = gzip.compress(body, mtime=0)
        elif coding == "deflate":
            body = zlib.compress(body)
        elif coding == "raw-deflate":
            compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = compressor.compress(body) + compressor.flush()
        elif coding == "br":
            import brotli

            body = brotli.compress(body)
        elif coding == "zstd":
            body = zstd_module().compress(body)
        elif coding != "identity":
            raise ValueError(f"unknown coding {coding!r}")
    return body


def zstd_module() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]
    return zstd


def _header_coding(coding: str) -> str:
    return "deflate" if coding == "raw-deflate" else coding


@functools.cache
def bomb(coding: str, mebibytes: int) -> bytes:
    """``mebibytes`` MiB of zeros, compressed: a small body that expands enormously."""
    zeros = bytes(1024 * 1024)  # compressed a MiB at a time: the whole never sits in memory
    if coding == "gzip":
        compressor = zlib.compressobj(9, wbits=zlib.MAX_WBITS | 16)
        return b"".join(compressor.compress(zeros) for _ in range(mebibytes)) + compressor.flush()
    if coding == "br":
        import brotli

        brotli_compressor = brotli.Compressor(quality=5)
        pieces = [brotli_compressor.process(zeros) for _ in range(mebibytes)]
        return b"".join(pieces) + brotli_compressor.finish()
    if coding == "zstd":
        zstd_compressor = zstd_module().ZstdCompressor()
        pieces = [zstd_compressor.compress(zeros) for _ in range(mebibytes)]
        return b"".join(pieces) + zstd_compressor.flush()
    raise ValueError(f"no bomb for {coding!r}")


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """The routes of the test uvicorn servers.

    ``/echo``: method, path, query, headers, body and the ``connection`` header, as JSON.
    ``/peer[?delay=s]``: the client port. ``/id/{token}[?delay=s]``: the token, as the body
    (a caller can tell that the answer is its own). ``/status/{code}[?encoding=c]`` (with a
    ``Content-Encoding: c`` header).
    ``/bytes/{n}``: n bytes of ``x``.
    ``/stream/{n}``: a chunked body of n chunks ``chunk-{i}\\n``. ``/slow?delay=s``.
    ``/keepalive-hint?timeout=N[&max=M]``: a ``Keep-Alive: [max=M, ]timeout=N`` header.
    ``/close``: a response with ``Connection: close``.
    ``/encoded/{codings}[?lines=n&chunk=b&json=1]``: ``encoded_body(n)`` (or a small JSON
    object) with each coding of the
    comma-separated list applied in turn (``raw-deflate``: deflate data with no zlib wrapper),
    sent in ``b``-byte pieces if asked. ``/corrupt/{coding}[?cut=1]``: data that is no such
    coding, or a body cut short. ``/bomb/{coding}?mb=n``: n MiB of zeros, compressed (cached).
    ``/redirect/{code}?to=url[&body=n]``: a redirect there (with an n-byte body).
    ``/chain/{n}``: n redirects, then ``/echo``. ``/loop``: a redirect to itself.
    """
    if scope["type"] == "lifespan":  # pragma: no cover - lifespan is off
        return
    path: str = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    client_port = (scope.get("client") or ("", 0))[1]
    json_headers = [(b"content-type", b"application/json")]

    if path == "/echo":
        body = await _read_body(receive)
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        connection = next((v for k, v in headers if k == "connection"), None)
        payload = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "headers": headers,
            "connection": connection,
            "body": body.decode("latin-1"),
            "client_port": client_port,
        }
        await _send(send, 200, _json(payload), json_headers)
    elif path == "/peer":
        await _read_body(receive)
        await asyncio.sleep(float(query.get("delay", "0")))
        await _send(send, 200, _json({"port": client_port}), json_headers)
    elif path.startswith("/id/"):
        await _read_body(receive)
        await asyncio.sleep(float(query.get("delay", "0")))  # 0 still yields: requests overlap
        await _send(send, 200, path[len("/id/") :].encode())
    elif path.startswith("/status/"):
        await _read_body(receive)
        status = int(path.rsplit("/", 1)[1])
        body = b"" if status in (204, 304) else f"status {status}".encode()
        coding = query.get("encoding")  # a Content-Encoding header, the body left as it is
        await _send(send, status, body, [(b"content-encoding", coding.encode())] if coding else [])
    elif path.startswith("/bytes/"):
        await _read_body(receive)
        await _send(send, 200, b"x" * int(path.rsplit("/", 1)[1]))
    elif path.startswith("/stream/"):
        await _read_body(receive)
        count = int(path.rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(count):
            chunk = f"chunk-{index}\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(float(query.get("interval", "0")))
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await _read_body(receive)
        await asyncio.sleep(float(query.get("delay", "1")))
        await _send(send, 200, b"slow")
    elif path == "/keepalive-hint":
        await _read_body(receive)
        hint = f"timeout={query.get('timeout', '5')}"
        if "max" in query:
            hint = f"max={query['max']}, {hint}"
        await _send(send, 200, b"hint", [(b"keep-alive", hint.encode())])
    elif path == "/close":
        await _read_body(receive)
        await _send(send, 200, b"closing", [(b"connection", b"close")])
    elif path.startswith("/encoded/"):
        await _read_body(receive)
        codings = path.rsplit("/", 1)[1].split(",")
        if "json" in query:
            plain, content_type = _json({"greeting": "caf\u00e9", "n": 1}), b"application/json"
        else:
            plain = encoded_body(int(query.get("lines", "100")))
            content_type = b"text/plain; charset=utf-8"
        body = encode(plain, codings)
        headers = [
            (b"content-type", content_type),
            (b"content-encoding", ", ".join(_header_coding(c) for c in codings).encode()),
        ]
        await _send_in_pieces(send, body, headers, int(query.get("chunk", "0")))
    elif path.startswith("/corrupt/"):
        await _read_body(receive)
        coding = path.rsplit("/", 1)[1]
        if "cut" in query:
            whole = encode(encoded_body(1000), [coding])
            body = whole[: len(whole) // 2]
        else:
            body = b"this is no " + coding.encode() + b" data" * 100
        await _send(send, 200, body, [(b"content-encoding", coding.encode())])
    elif path.startswith("/bomb/"):
        await _read_body(receive)
        coding = path.rsplit("/", 1)[1]
        body = bomb(coding, int(query.get("mb", "101")))
        await _send_in_pieces(send, body, [(b"content-encoding", coding.encode())], 16384)
    elif path.startswith("/redirect/"):
        await _read_body(receive)
        status = int(path.rsplit("/", 1)[1])
        # As servers write it: a Location that is not ASCII goes out in UTF-8.
        location = query.get("to", "/echo").encode("utf-8")
        body = b"r" * int(query.get("body", "0"))
        await _send(send, status, body, [(b"location", location)])
    elif path.startswith("/chain/"):
        await _read_body(receive)
        left = int(path.rsplit("/", 1)[1])
        location = f"/chain/{left - 1}" if left > 1 else "/echo"
        await _send(send, 302, b"", [(b"location", location.encode())])
    elif path == "/loop":
        await _read_body(receive)
        await _send(send, 302, b"", [(b"location", b"/loop")])
    else:
        await _read_body(receive)
        await _send(send, 404, b"not found")


class UvicornServer:
    """A real uvicorn on 127.0.0.1:0 serving ``echo_app`` (or ``app``), counting with
    ``CountingH11Protocol``."""

    def __init__(
        self,
        thread: ServerThread,
        *,
        timeout_keep_alive: int = 5,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        app: Callable[[Any, Any, Any], Awaitable[None]] = echo_app,
    ) -> None:
        self.stats = ServerStats()
        self.scheme = "https" if ssl_certfile else "http"
        config = uvicorn.Config(
            app,
            host=LOCALHOST,
            port=0,
            http=counting_protocol(self.stats),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=timeout_keep_alive,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = thread
        self._done = thread.portal.start_task_soon(self._server.serve)
        if not wait_until_sync(lambda: self._server.started or self._done.done(), timeout=10):
            raise RuntimeError("uvicorn did not start")
        if self._done.done():
            self._done.result()
        self.port: int = self._server.servers[0].sockets[0].getsockname()[1]
        self.origin = f"{self.scheme}://{LOCALHOST}:{self.port}"
        self.url = self.origin

    def reset(self) -> None:
        """Wait (briefly) for connections of earlier tests to go, then zero the counters."""
        wait_until_sync(lambda: self.stats.open == 0, timeout=2)
        self.stats.reset()

    def close(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            self._done.result(timeout=10)


# --------------------------------------------------------------------------- raw faults


@dataclass
class RawRequest:
    """One request as received by ``RawServer``: ``raw`` holds every byte of it."""

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass
class RawConnection:
    """One accepted connection, handed to a ``RawServer`` handler."""

    stream: anyio.abc.ByteStream  # the accepted SocketStream, or a TLS stream over it
    server: RawServer
    index: int  # 0 for the server's first connection since reset, then 1, 2...
    peer_port: int
    requests: int = 0  # requests read on this connection so far
    _buffer: bytes = field(default=b"", repr=False)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        self._buffer += data
        return True

    async def read_request(self) -> RawRequest | None:
        """Read one whole request (Content-Length or chunked body); ``None`` on EOF."""
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                return None
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]
        raw = head + b"\r\n\r\n"
        lowered = {k.lower(): v for k, v in headers}
        body = b""
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            body, consumed = await self._read_chunked()
            raw += consumed
        elif "content-length" in lowered:
            length = int(lowered["content-length"])
            while len(self._buffer) < length:
                if not await self._fill():
                    return None
            body, self._buffer = self._buffer[:length], self._buffer[length:]
            raw += body
        request = RawRequest(method, target, version.removeprefix("HTTP/"), headers, body, raw)
        self.requests += 1
        self.server.stats.request_received(self.peer_port, f"{method} {target}")
        if self.server.stats.log_requests:
            self.server.received.append(request)
        return request

    async def _read_chunked(self) -> tuple[bytes, bytes]:
        body = b""
        consumed = b""
        while True:
            while b"\r\n" not in self._buffer:
                if not await self._fill():
                    return body, consumed
            size_line, _, self._buffer = self._buffer.partition(b"\r\n")
            consumed += size_line + b"\r\n"
            size = int(size_line.split(b";")[0], 16)
            while len(self._buffer) < size + 2:
                if not await self._fill():
                    return body, consumed
            chunk, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            consumed += chunk + b"\r\n"
            if size == 0:
                # No trailers are sent by the client under test.
                return body, consumed
            body += chunk

    @property
    def pending(self) -> bool:
        """Whether bytes of the next request were already read off the socket."""
        return bool(self._buffer)

    async def wait_readable(self) -> bool:
        """Wait for the next bytes (kept for ``read_request``); False once the peer has gone."""
        return await self._fill()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def wait_closed(self) -> None:
        """Read and discard until the peer closes: how "never answer" notices the client left."""
        while await self._fill():
            self._buffer = b""


RawHandler = Callable[[RawConnection], Awaitable[None]]


def response_bytes(
    body: bytes = b"ok",
    *,
    status: int = 200,
    reason: str = "OK",
    headers: list[tuple[str, str]] | None = None,
    version: str = "1.1",
    content_length: bool = True,
) -> bytes:
    """Build a response; with ``content_length=False`` no length header is added."""
    lines = [f"HTTP/{version} {status} {reason}"]
    all_headers = list(headers or [])
    if content_length and not any(k.lower() == "content-length" for k, _ in all_headers):
        all_headers.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in all_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def keep_alive_handler(conn: RawConnection) -> None:
    """The default: answer every request with ``ok`` and keep the connection open."""
    while (request := await conn.read_request()) is not None:
        response = response_bytes()
        if request.method == "HEAD":
            response = response[: -len(b"ok")]
        await conn.send(response)


def per_request(
    respond: Callable[[RawConnection, RawRequest], Awaitable[bool | None]],
) -> RawHandler:
    """A handler calling ``respond(conn, request)`` for each request; it returns True to close."""

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if await respond(conn, request):
                return

    return handler


class RawServer:
    """A scriptable TCP server: each connection runs ``self.handler`` (set per test)."""

    def __init__(self, thread: ServerThread) -> None:
        self.stats = ServerStats()
        self.handler: RawHandler = keep_alive_handler
        self.received: list[RawRequest] = []
        self.errors: list[BaseException] = []
        self._connections = 0
        self._sockets: dict[int, socket.socket] = {}  # of the connections being handled
        self._thread = thread
        self._listener: anyio.abc.SocketListener = thread.portal.call(
            functools.partial(anyio.create_tcp_listener, local_host=LOCALHOST, local_port=0)
        )
        self._cancel = threading.Event()
        self._serving = thread.portal.start_task_soon(self._serve)
        self.port: int = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self.origin = f"http://{LOCALHOST}:{self.port}"
        self.url = self.origin

    async def _serve(self) -> None:
        # Not listener.serve(): its accept loop dies when a client resets a connection before
        # it is accepted (setting TCP_NODELAY on it fails), and the agent resets broken sockets.
        (listener,) = self._listener.listeners  # one address: 127.0.0.1
        async with self._listener, anyio.create_task_group() as group:
            while True:
                try:
                    stream = await listener.accept()
                except (OSError, anyio.BrokenResourceError):
                    continue
                self._count_clients_still_open(stream)
                group.start_soon(self._handle, stream)

    def _count_clients_still_open(self, accepted: anyio.abc.SocketStream) -> None:
        """On accept: how many connections, this one included, their clients still hold open."""
        still_open = sum(not peer_left(sock) for sock in self._sockets.values())
        self.stats.client_open_at_accept(still_open + 1)
        raw = accepted.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if raw is not None:
            self._sockets[id(accepted)] = raw

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        index = self._connections
        self._connections += 1
        try:
            peer_port = stream.extra(anyio.abc.SocketAttribute.remote_port)
        except (OSError, anyio.TypedAttributeLookupError):
            peer_port = 0  # the client reset the connection before we got to it
        conn = RawConnection(stream, self, index, peer_port)
        self.stats.connection_opened(id(conn), peer_port)
        try:
            async with stream:
                await self.handler(conn)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        except Exception as exc:
            # A broken handler must not take the listener down; the test can look here.
            self.errors.append(exc)
        finally:
            self._sockets.pop(id(stream), None)
            self.stats.connection_closed(id(conn))

    def reset(self) -> None:
        wait_until_sync(lambda: self.stats.open == 0, timeout=2)
        self.stats.reset()
        self.handler = keep_alive_handler
        self.received = []
        self.errors = []
        self._connections = 0

    def close(self) -> None:
        self._serving.cancel()


def peer_left(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` closed or reset it (asked of the kernel; nothing is read)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True  # closed already


# --------------------------------------------------------------------------- TLS


@dataclass
class TLSFiles:
    ca: Any  # trustme.CA
    certfile: str
    keyfile: str

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@contextlib.contextmanager
def tls_files() -> Iterator[TLSFiles]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(LOCALHOST, "localhost")
    with cert.private_key_pem.tempfile() as keyfile, cert.cert_chain_pems[0].tempfile() as certfile:
        yield TLSFiles(ca, certfile, keyfile)


# --------------------------------------------------------------------------- blocking sockets


class SocketServer:
    """A plain-socket server in its own thread, for faults that need a peer that truly stops
    reading: an asyncio server (anyio's included) reads into its own buffers behind our back.

    ``handler(sock)`` runs for each accepted connection (blocking calls, one thread each);
    ``receive_buffer`` shrinks the accepted sockets' kernel receive buffer.
    """

    def __init__(
        self, handler: Callable[[socket.socket], None], *, receive_buffer: int | None = None
    ) -> None:
        self._handler = handler
        self._listener = socket.socket()
        if receive_buffer is not None:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._listener.bind((LOCALHOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.origin = self.url
        self.opened = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.opened += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self._handler(conn)
            except OSError:
                pass
            except Exception as exc:  # a broken handler is reported, never fatal
                self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._accepting.join()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=12)


def read_head(conn: socket.socket) -> bytes:
    """Read a request head byte by byte, so nothing after it is taken off the socket."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = conn.recv(1)
        if not byte:
            break
        head += byte
    return head
