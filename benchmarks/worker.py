"""A client's own process, which measures that client on command, one run at a time.

    python -m benchmarks.worker CLIENT BASE_URL

It first opens and closes a session, and answers ``{"ready": true}`` or ``{"unavailable":
"why"}``. Then it reads one JSON command a line on stdin and answers one JSON line on stdout::

    {"url": ..., "concurrency": 10, "requests": 2000, "warmup": 50, "loop": "uvloop", "body": 2}
    -> {"cpu": 0.31, "wall": 0.42}            (seconds over the timed requests)

Each command runs on a new event loop with a new session: ``warmup`` requests first (which open
the connections a keep-alive run reuses), then ``requests`` timed ones, ``concurrency`` at a
time. CPU is ``time.process_time()``: user and system time of this whole process, so the kernel
work a client causes on its sockets counts, and the upstream's does not.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TextIO

from .clients import BY_NAME, Client
from .session import BadResponse, Unavailable


async def run_requests(
    get: Callable[[str], Awaitable[int]], url: str, count: int, concurrency: int, body: int
) -> None:
    """``count`` GETs of ``url``, ``concurrency`` at a time, each checked for ``body`` bytes."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            length = await get(url)
            if length != body:
                raise BadResponse(f"{length} body bytes instead of {body}")

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, count)):
            tasks.create_task(worker())


async def measure(client: Client, command: dict[str, Any]) -> dict[str, float]:
    session = await client.open(command["url"], command["concurrency"])
    try:
        args = (command["url"], command["concurrency"], command["body"])
        await run_requests(session.get, args[0], command["warmup"], args[1], args[2])
        gc.collect()  # the warm-up's garbage is not the timed requests' to collect
        cpu, wall = time.process_time(), time.perf_counter()
        await run_requests(session.get, args[0], command["requests"], args[1], args[2])
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
    finally:
        await session.close()


def run_on(loop: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` to completion on a new ``loop`` ("asyncio" or "uvloop")."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


async def probe(client: Client, base_url: str) -> None:
    session = await client.open(base_url, 1)
    await session.close()


def serve(client: Client, base_url: str, out: TextIO) -> None:
    def answer(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        run_on("asyncio", probe(client, base_url))
    except Unavailable as exc:
        answer({"unavailable": str(exc)})
        return
    answer({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer(run_on(command["loop"], measure(client, command)))
        except Exception as exc:
            traceback.print_exc()
            answer({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    name, base_url = sys.argv[1], sys.argv[2]
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a library prints must not mix with the answers
    serve(BY_NAME[name], base_url, out)


if __name__ == "__main__":
    main()
