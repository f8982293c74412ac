"""What AgentMiddleware costs a request that does not use the agent: CPU per request.

Two identical Starlette apps, one with ``AgentMiddleware`` (a started registry) and one without,
serve the same handler that never touches the agent. Two modes:

* ``asgi`` (default): requests are driven through the ASGI interface in process, with no
  network, so the figure is the app's own CPU per request and the difference is the middleware.
* ``uvicorn``: each app runs under uvicorn in a child process; a raw-socket client sends
  keep-alive requests and the child's CPU time (``time.process_time()``, read through a ``/cpu``
  route both apps have) is divided by the request count.

Rounds alternate between the two apps so drift (thermal, other load) hits both equally; the
median per-request CPU of each is reported with the ratio. Not a test.

    python -m benchmarks --only middleware            # both modes, onto the benchmark page
    python -m benchmarks.middleware [--mode asgi|uvicorn] [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from starlette_agent._registry import AgentRegistry
from starlette_agent.middleware import AgentMiddleware


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def cpu(request: Request) -> PlainTextResponse:
    """The server process's CPU seconds so far, at nanosecond resolution (``/proc`` has ticks)."""
    return PlainTextResponse(repr(time.process_time()))


def build_app(with_middleware: bool) -> Starlette:
    middleware = [Middleware(AgentMiddleware, registry=AgentRegistry())] if with_middleware else []
    return Starlette(routes=[Route("/", hello), Route("/cpu", cpu)], middleware=middleware)


# --------------------------------------------------------------------------- in process


async def _start(app: Any) -> tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]:
    """Run the app's lifespan startup; return the queue that will deliver its shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, send))
    await started.wait()
    return inbox, task


async def _drive(app: Any, count: int) -> float:
    """CPU seconds per request for ``count`` GETs through ``app``'s ASGI interface."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    base_scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 1234),
    }
    start = time.process_time()
    for _ in range(count):
        # A fresh scope and state per request, as a server gives (state copied from lifespan).
        await app({**base_scope, "state": {}}, receive, send)
    return (time.process_time() - start) / count


async def run_asgi(requests: int, rounds: int) -> dict[str, list[float]]:
    apps = {"without": build_app(False), "with": build_app(True)}
    lifespans = {name: await _start(app) for name, app in apps.items()}
    results: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():  # warm up
        await _drive(app, requests // 10)
    for _ in range(rounds):
        for name, app in apps.items():
            results[name].append(await _drive(app, requests))
    for inbox, task in lifespans.values():
        await inbox.put({"type": "lifespan.shutdown"})
        await task
    return results


# --------------------------------------------------------------------------- under uvicorn

SERVER = textwrap.dedent(
    """
    import sys
    import uvicorn
    sys.path.insert(0, {path!r})
    from benchmarks.middleware import build_app
    uvicorn.run(build_app({with_middleware}), host="127.0.0.1", port={port},
                log_level="warning", access_log=False)
    """
)


def _cpu_seconds(port: int) -> float:
    """Ask the server for its own process CPU time (user + system)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /cpu HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return float(data.split(b"\r\n\r\n", 1)[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client_requests(port: int, count: int) -> None:
    """Keep-alive GETs over one raw socket: the cheapest client, so it disturbs the server least."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            sock.sendall(request)
            data = b""
            while not data.endswith(b"hello"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                data += chunk


def run_uvicorn(requests: int, rounds: int) -> dict[str, list[float]]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
    results: dict[str, list[float]] = {"without": [], "with": []}
    children = {}
    try:
        for name in results:
            port = _free_port()
            code = SERVER.format(path=here, with_middleware=name == "with", port=port)
            child = subprocess.Popen([sys.executable, "-c", code])
            children[name] = (child, port)
        for _child, port in children.values():
            deadline = time.monotonic() + 20
            while True:
                try:
                    _client_requests(port, 10)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            _client_requests(port, requests // 10)  # warm up
        for _ in range(rounds):
            for name, (_child, port) in children.items():
                before = _cpu_seconds(port)
                _client_requests(port, requests)
                results[name].append((_cpu_seconds(port) - before) / requests)
    finally:
        for child, _ in children.values():
            child.terminate()
            child.wait()
    return results


def summarise(results: dict[str, list[float]]) -> dict[str, Any]:
    without = statistics.median(results["without"])
    with_mw = statistics.median(results["with"])
    return {
        "without_us": without * 1e6,
        "with_us": with_mw * 1e6,
        "added_us": (with_mw - without) * 1e6,
        "ratio": with_mw / without,
        "without_us_rounds": [value * 1e6 for value in results["without"]],
        "with_us_rounds": [value * 1e6 for value in results["with"]],
    }


def measure(
    requests: int, uvicorn_requests: int, rounds: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Both modes (uvicorn's skipped when ``uvicorn_requests`` is 0), summarised."""
    measured: dict[str, Any] = {"asgi": summarise(asyncio.run(run_asgi(requests, rounds)))}
    measured["asgi"]["requests"] = requests
    log(f"  asgi: {measured['asgi']['added_us']:+.2f} us per request")
    if uvicorn_requests:
        measured["uvicorn"] = summarise(run_uvicorn(uvicorn_requests, rounds))
        measured["uvicorn"]["requests"] = uvicorn_requests
        log(f"  uvicorn: {measured['uvicorn']['added_us']:+.2f} us per request")
    measured["rounds"] = rounds
    return measured


def report(mode: str, results: dict[str, list[float]], requests: int) -> None:
    summary = summarise(results)
    print(f"mode={mode} requests/round={requests} rounds={len(results['with'])}")
    print(f"  without AgentMiddleware: {summary['without_us']:8.2f} us CPU/request (median)")
    print(f"  with AgentMiddleware:    {summary['with_us']:8.2f} us CPU/request (median)")
    ratio = summary["ratio"]
    print(f"  ratio: {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)")
    spread = {k: f"{min(v) * 1e6:.2f}..{max(v) * 1e6:.2f}" for k, v in results.items()}
    print(f"  per-round range (us): {spread}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["asgi", "uvicorn"], default="asgi")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.mode == "asgi":
        requests = args.requests or 20_000
        report("asgi", asyncio.run(run_asgi(requests, args.rounds)), requests)
    else:
        requests = args.requests or 5_000
        report("uvicorn", run_uvicorn(requests, args.rounds), requests)


if __name__ == "__main__":
    main()
