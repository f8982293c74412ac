"""Three ``uvicorn.Server``s in one process and one asyncio event loop.

The listening sockets are bound first, so that a port of 0 becomes a real port before anything
starts and the servers can be told where the upstream is. Signals are handled here, once, for
all three servers (uvicorn's own handler would be installed three times and re-raise the signal
after the first server stopped): Ctrl-C (SIGINT) or SIGTERM stops server1 and server2, whose
lifespans close their agents, and then the upstream they were calling. A second Ctrl-C forces
the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from . import settings, upstream
from .server1 import app as server1_app
from .server2 import app as server2_app

logger = logging.getLogger("example_app")


@dataclass
class Hosted:
    name: str
    app: Starlette
    sock: socket.socket
    server: uvicorn.Server

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    # uvicorn's "Started server process" and friends, three times over, would not say which
    # server they are about; the example logs its own lines instead.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        hosted = [
            _host("upstream", upstream.app, settings.UPSTREAM_PORT),
            _host("server1", server1_app, settings.SERVER1_PORT),
            _host("server2", server2_app, settings.SERVER2_PORT),
        ]
    except OSError as exc:
        sys.exit(f"example_app: {exc}")
    up, one, two = hosted
    upstream.app.state.server = up.server
    peers = {"server1": one.url, "server2": two.url}
    upstream.app.state.peers = peers
    for app in (server1_app, server2_app):
        app.state.upstream_url = up.url
        app.state.peers = peers
    for item in hosted:
        print(f"{item.name:<9} {item.url}", flush=True)
    print(f"Dashboards: {one.url}/ and {two.url}/ (Ctrl-C stops all three)", flush=True)
    asyncio.run(_serve(up, [one, two]))


def _host(name: str, app: Starlette, port: int) -> Hosted:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.HOST, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"{name} cannot listen on {settings.HOST}:{port} ({exc.strerror}); "
            f"set EXAMPLE_{name.upper()}_PORT to another port, or 0 for any free one"
        ) from exc
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    # One signal handler for all three servers: see the module docstring.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return Hosted(name, app, sock, server)


async def _serve(upstream_host: Hosted, servers: list[Hosted]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    everything = [upstream_host, *servers]

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            logger.warning("forcing exit")
            for item in everything:
                item.server.force_exit = True
            return
        logger.info(
            "%s: stopping server1 and server2, then the upstream", signal.Signals(signum).name
        )
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    async with asyncio.TaskGroup() as group:
        upstream_task = group.create_task(_run(upstream_host))
        server_tasks = [group.create_task(_run(item)) for item in servers]
        stop = group.create_task(stopping.wait())
        # Until a signal, or until a server ends by itself (say its startup failed).
        await asyncio.wait(
            [stop, upstream_task, *server_tasks], return_when=asyncio.FIRST_COMPLETED
        )
        stop.cancel()
        # The servers making outbound calls stop first, closing their agents; the upstream last,
        # so that calls still in flight during their graceful shutdown can finish.
        for item in servers:
            item.server.should_exit = True
        await asyncio.wait(server_tasks)
        upstream_host.server.should_exit = True
    logger.info("all servers stopped")


async def _run(item: Hosted) -> None:
    try:
        await item.server.serve(sockets=[item.sock])
    except SystemExit:  # uvicorn exits when a lifespan startup fails
        logger.error("%s failed to start", item.name)
    else:
        logger.info("%s stopped", item.name)
