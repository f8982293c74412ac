"""Client CPU per request: starlette-agent against aiohttp and httpx, in the same run.

Many small keep-alive GETs to one upstream on 127.0.0.1. The upstream is a bare asyncio server
in a child process (so its work is not counted), answering every request with the same tiny
response. Each client makes ``--requests`` requests per round, ``--concurrency`` at a time;
rounds alternate between clients so drift on a shared machine hits them alike. Reported: the
median CPU time of the client process per request (``time.process_time()``, user + system, so
the kernel's loopback work a client causes is counted too) and its ratio to starlette-agent.
Absolute numbers are noise on shared machines; read the ratios.

    .venv/bin/python benchmarks/bench_agent.py [--requests 3000] [--rounds 5] [--concurrency 1]
        [--uvloop]

Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

UPSTREAM = textwrap.dedent(
    """
    import asyncio, sys

    RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: text/plain\\r\\n\\r\\nok"

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = b""

        def data_received(self, data):
            self.buffer += data
            while b"\\r\\n\\r\\n" in self.buffer:  # GETs only: no request bodies
                _, _, self.buffer = self.buffer.partition(b"\\r\\n\\r\\n")
                self.transport.write(RESPONSE)

    async def main():
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())
    """
)

Get = Callable[[], Awaitable[None]]


async def measure(get: Get, requests: int, concurrency: int) -> float:
    """CPU seconds per request for ``requests`` calls of ``get``, ``concurrency`` at a time."""
    for _ in range(50):  # warm up: connections open, caches filled
        await get()
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            await get()

    started = time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return (time.process_time() - started) / requests


async def starlette_agent_client(url: str) -> tuple[Get, Callable[[], Awaitable[Any]]]:
    from starlette_agent import Agent

    agent = Agent()

    async def get() -> None:
        response = await agent.get(url)
        assert response.status == 200 and response.content == b"ok"

    return get, agent.aclose


async def aiohttp_client(url: str) -> tuple[Get, Callable[[], Awaitable[Any]]]:
    import aiohttp

    session = aiohttp.ClientSession()

    async def get() -> None:
        async with session.get(url) as response:
            assert response.status == 200 and await response.read() == b"ok"

    return get, session.close


async def httpx_client(url: str) -> tuple[Get, Callable[[], Awaitable[Any]]]:
    import httpx

    client = httpx.AsyncClient()

    async def get() -> None:
        response = await client.get(url)
        assert response.status_code == 200 and response.content == b"ok"

    return get, client.aclose


CLIENTS = {
    "starlette-agent": starlette_agent_client,
    "aiohttp": aiohttp_client,
    "httpx": httpx_client,
}


async def run(url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    for _ in range(args.rounds):
        for name, make in CLIENTS.items():
            get, close = await make(url)
            try:
                results[name].append(await measure(get, args.requests, args.concurrency))
            finally:
                await close()
    return results


def start_upstream() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop")
    args = parser.parse_args()
    process, port = start_upstream()
    try:
        url = f"http://127.0.0.1:{port}/"
        if args.uvloop:
            import uvloop

            results = uvloop.run(run(url, args))
        else:
            results = asyncio.run(run(url, args))
    finally:
        process.terminate()
        process.wait()
    ours = statistics.median(results["starlette-agent"])
    print(
        f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}, "
        f"{'uvloop' if args.uvloop else 'asyncio'}, median client CPU per request:"
    )
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:16s} {median * 1e6:8.1f} us   {median / ours:5.2f}x starlette-agent")


if __name__ == "__main__":
    main()
