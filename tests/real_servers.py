"""Real servers nobody here wrote, each counting what it saw: nginx and hypercorn.

Both listen on 127.0.0.1 on an ephemeral port and give the shape of ``servers.UvicornServer``:
``.url``, ``.port``, ``.stats`` (``opened``, ``requests``, ``request_ports``, ``request_lines``)
and ``reset()`` between tests.

* ``NginxServer``: Debian's nginx, run in the foreground as a child process with a configuration
  written to a temporary directory (``keepalive_timeout 1s``, ``keepalive_requests 100``). It
  counts from its own access log: one line per request naming nginx's connection serial number
  (``$connection``), so "connections opened" is what nginx itself numbered.
* ``HypercornServer``: hypercorn serving ``servers.echo_app`` on the shared ``ServerThread``.
  Counting happens in the app, which sees requests but not connections: a connection is counted
  at its first request, by its client port (``scope["client"]``). A connection that sends no
  request is not counted, and two connections reusing one client port within a test would be
  counted once (the kernel hands out ephemeral ports in turn, so this does not happen in a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import LOCALHOST, ServerStats, ServerThread, echo_app, wait_until_sync

# --------------------------------------------------------------------------- nginx

NGINX_KEEPALIVE_TIMEOUT = 1  # seconds an idle keep-alive connection is kept by nginx
NGINX_KEEPALIVE_REQUESTS = 100  # requests after which nginx closes a connection

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format counting '$connection $connection_requests $remote_port "$request" $status';
    access_log {dir}/access.log counting;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    keepalive_timeout {keepalive_timeout}s;
    keepalive_requests {keepalive_requests};

    server {{
        listen {host}:{port};

        # The client port, as in uvicorn's /peer.
        location = /peer {{
            return 200 "$remote_port\\n";
        }}

        # Static files of a given size, written by NginxServer.file_url().
        location /files/ {{
            alias {dir}/files/;
        }}

        # The same files delivered at 8 KB/s: a slow response body.
        location /slow/ {{
            alias {dir}/files/;
            limit_rate 8k;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """nginx on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass
class AccessLogStats:
    """What nginx logged since ``reset()``: one access-log line per request, read on demand.

    nginx writes a request's line just after sending its response, so a test waits for the
    counts (``wait_until``) rather than reading them the moment its last response arrived."""

    path: Path
    _offset: int = 0
    _pending: bytes = b""
    connections: dict[int, int] = field(default_factory=dict)  # $connection -> requests logged
    request_ports: list[int] = field(default_factory=list)
    request_lines: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self._read()
        self.connections = {}
        self.request_ports = []
        self.request_lines = []
        self.statuses = []

    @property
    def opened(self) -> int:
        """Connections that sent at least one request since ``reset()``."""
        self._read()
        return len(self.connections)

    @property
    def requests(self) -> int:
        self._read()
        return len(self.request_lines)

    @property
    def peer_ports(self) -> list[int]:
        """The client port of each connection, in order of its first request."""
        self._read()
        return list(dict.fromkeys(self.request_ports))

    def _read(self) -> None:
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            data = self._pending + log.read()
        self._offset += len(data) - len(self._pending)
        *lines, self._pending = data.split(b"\n")  # a line nginx is still writing waits
        for line in lines:
            connection, _, port, rest = line.decode().split(" ", 3)
            request, _, status = rest.rpartition(" ")
            self.connections[int(connection)] = self.connections.get(int(connection), 0) + 1
            self.request_ports.append(int(port))
            method, target, _ = request.strip('"').split(" ", 2)
            self.request_lines.append(f"{method} {target}")
            self.statuses.append(int(status))

    def __repr__(self) -> str:
        return f"<AccessLogStats opened={self.opened} requests={self.requests}>"


class NginxServer:
    """nginx in the foreground on 127.0.0.1:<free port>, counting from its access log."""

    def __init__(
        self,
        binary: str,
        *,
        keepalive_timeout: int = NGINX_KEEPALIVE_TIMEOUT,
        keepalive_requests: int = NGINX_KEEPALIVE_REQUESTS,
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_requests = keepalive_requests
        self._dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        (self._dir / "files").mkdir()
        (self._dir / "access.log").touch()
        self._process, self.port = start_on_a_free_port(
            functools.partial(self._launch, binary), "nginx", self.error_log
        )
        self.origin = f"http://{LOCALHOST}:{self.port}"
        self.url = self.origin
        self.stats = AccessLogStats(self._dir / "access.log")

    def _launch(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        conf = self._dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self._dir,
                host=LOCALHOST,
                port=port,
                keepalive_timeout=self.keepalive_timeout,
                keepalive_requests=self.keepalive_requests,
            )
        )
        with open(self._dir / "stderr.log", "ab") as log:
            return subprocess.Popen(
                [binary, "-p", self._dir, "-e", self._dir / "error.log", "-c", conf],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def error_log(self) -> str:
        texts = [
            (self._dir / name).read_text(errors="replace")
            for name in ("stderr.log", "error.log")
            if (self._dir / name).exists()
        ]
        return "\n".join(texts).strip()

    def file_url(self, size: int, *, slow: bool = False) -> str:
        """The URL of a static file of ``size`` bytes (``slow``: sent at 8 KB/s)."""
        path = self._dir / "files" / str(size)
        if not path.exists():
            path.write_bytes(b"x" * size)
        return f"{self.url}/{'slow' if slow else 'files'}/{size}"

    def reset(self) -> None:
        """Count afresh from here in the access log."""
        if self._process.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.error_log()}")
        self.stats.reset()

    def close(self) -> None:
        self._process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def start_on_a_free_port(
    launch: Callable[[int], subprocess.Popen[bytes]], name: str, error_log: Callable[[], str]
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server that binds its port itself (``launch(port)``), and the port it listens on:
    pick a free port, and pick again if it was taken meanwhile."""
    for _ in range(5):
        port = _free_port()
        process = launch(port)
        if wait_until_sync(functools.partial(_started, process, port), timeout=10):
            if process.poll() is None:
                return process, port
        else:
            process.kill()
            process.wait()
    raise RuntimeError(f"{name} did not start: {error_log()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def _started(process: subprocess.Popen[bytes], port: int) -> bool:
    """Listening, or exited (the port was taken, the configuration was refused)."""
    return process.poll() is not None or _accepts(port)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=1):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- hypercorn


def counting_app(stats: ServerStats, app: Callable[..., Any] = echo_app) -> Callable[..., Any]:
    """``app``, counting each request, and each new client port as a connection, in ``stats``."""

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            port = (scope.get("client") or ("", 0))[1]
            if port not in stats.peer_ports:
                stats.connection_opened(port, port)
            stats.request_received(port, f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    return counted


class HypercornServer:
    """hypercorn serving ``echo_app`` on 127.0.0.1:<free port>, in the shared ``ServerThread``."""

    def __init__(self, thread: ServerThread, *, keep_alive_timeout: float = 5) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self.stats = ServerStats()
        listener = socket.create_server((LOCALHOST, 0))
        self.port: int = listener.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the listener from here
        config.keep_alive_timeout = keep_alive_timeout
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1
        self.keep_alive_timeout = keep_alive_timeout
        self._thread = thread
        self._shutdown: asyncio.Event = thread.portal.call(_new_event)
        self._done = thread.portal.start_task_soon(
            lambda: serve(counting_app(self.stats), config, shutdown_trigger=self._shutdown.wait)
        )
        if not wait_until_sync(lambda: self._done.done() or _accepts(self.port), timeout=10):
            raise RuntimeError("hypercorn did not start")
        if self._done.done():
            self._done.result()
        self.origin = f"http://{LOCALHOST}:{self.port}"
        self.url = self.origin

    def reset(self) -> None:
        self.stats.reset()

    def close(self) -> None:
        self._thread.portal.call(self._shutdown.set)
        with contextlib.suppress(Exception):
            self._done.result(timeout=10)


async def _new_event() -> asyncio.Event:
    return asyncio.Event()  # made in the server thread's loop, where hypercorn waits on it
