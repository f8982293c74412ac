"""Memory an agent holds for each idle pooled socket and for each queued request.

Each figure comes from a fresh process, so that memory freed by one measurement cannot be
reused by the next and hide its growth:

* idle sockets: ``sockets`` requests at once open as many sockets, which stay pooled, idle,
  once the requests are done; the growth divided by ``sockets``.
* queued requests: with one socket allowed and held by a response whose body is left unread,
  ``queued`` requests are started and wait for it; the growth divided by ``queued``. Each of
  them is a task of its own, as a request in a server usually is; for scale, the same count of
  bare tasks waiting on an event is measured too.

Growth is counted two ways: ``tracemalloc`` (Python objects, exact) and the resident set size
(everything the process touched, including the event loop's and the socket objects' C
structures, in 4 KiB pages). The kernel's own memory for a socket is in neither.

    python -m benchmarks.memory CLIENT BASE_URL idle|queued|bare_task COUNT tracemalloc|rss
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from typing import Any

from .clients import agent_options
from .session import Unavailable
from .upstream import ROOT

#: The clients measured: the agent with each parser, and aiohttp for scale.
CLIENTS = ("agent-h11", "agent-httptools", "aiohttp")

Counter = Callable[[], int]


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


def socket_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def settle() -> None:
    """Let every started task reach its first wait; then collect garbage."""
    for _ in range(20):
        await asyncio.sleep(0)
    gc.collect()


class AgentSubject:
    """An Agent with the given parser and per-origin limit, and the calls the counts need."""

    def __init__(self, http_parser: str, *, limit: int | None) -> None:
        from starlette_agent import Agent, AgentError

        try:
            self.agent = Agent(max_sockets=limit, **agent_options(http_parser))
        except AgentError as exc:
            raise Unavailable(str(exc)) from exc

    async def get(self, url: str) -> None:
        await self.agent.get(url)

    async def hold(self, url: str) -> Callable[[], Awaitable[None]]:
        """Take a socket with a response whose body is left unread; return its release."""
        held = AsyncExitStack()
        await held.enter_async_context(self.agent.stream("GET", url))
        return held.aclose

    def queued(self) -> int | None:
        return self.agent.stats().queued

    async def close(self) -> None:
        await self.agent.aclose()


class AiohttpSubject:
    """An aiohttp session with the given connection limit, for scale."""

    def __init__(self, *, limit: int | None) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit or 0))

    async def get(self, url: str) -> None:
        async with self.session.get(url) as response:
            await response.read()

    async def hold(self, url: str) -> Callable[[], Awaitable[None]]:
        response = await self.session.get(url)

        async def release() -> None:
            response.release()

        return release

    def queued(self) -> int | None:
        return None  # aiohttp does not say; its waiters are counted by the memory they hold

    async def close(self) -> None:
        await self.session.close()


def subject(name: str, *, limit: int | None) -> AgentSubject | AiohttpSubject:
    if name.startswith("agent-"):
        return AgentSubject(name.removeprefix("agent-"), limit=limit)
    return AiohttpSubject(limit=limit)


async def idle_sockets(name: str, url: str, count: int, measure: Counter) -> dict[str, Any]:
    client = subject(name, limit=None)
    await client.get(url)  # imports, caches and the first socket: not part of the growth
    await settle()
    sockets, before = socket_count(), measure()
    await asyncio.gather(*(client.get(url) for _ in range(count)))
    await settle()
    grown, opened = measure() - before, socket_count() - sockets + 1
    await client.close()
    return {"per_socket": grown / count, "sockets": opened}


async def queued_requests(name: str, url: str, count: int, measure: Counter) -> dict[str, Any]:
    client = subject(name, limit=1)
    await client.get(url)
    release = await client.hold(url)
    await settle()
    before = measure()
    tasks = [asyncio.ensure_future(client.get(url)) for _ in range(count)]
    await settle()
    grown, queued = measure() - before, client.queued()
    await release()
    await asyncio.gather(*tasks)
    await client.close()
    return {"per_request": grown / count, "queued": queued}


async def bare_tasks(count: int, measure: Counter) -> float:
    """What ``count`` tasks that only wait on an event hold, per task: the floor of a request."""
    event = asyncio.Event()
    await settle()
    before = measure()
    tasks = [asyncio.ensure_future(event.wait()) for _ in range(count)]
    await settle()
    grown = measure() - before
    event.set()
    await asyncio.gather(*tasks)
    return grown / count


KINDS = ("idle", "queued", "bare_task")


async def measure_one(name: str, url: str, kind: str, count: int, way: str) -> dict[str, Any]:
    if way == "tracemalloc":
        tracemalloc.start()
        counter: Counter = traced_bytes
    else:
        counter = resident_bytes
    try:
        if kind == "idle":
            return await idle_sockets(name, url, count, counter)
        if kind == "queued":
            return await queued_requests(name, url, count, counter)
        return {"per_task": await bare_tasks(count, counter)}
    except Unavailable as exc:
        return {"unavailable": str(exc)}


def main() -> None:
    name, base_url, kind, count, way = sys.argv[1:6]
    result = asyncio.run(measure_one(name, base_url + "/small", kind, int(count), way))
    print(json.dumps(result))


if __name__ == "__main__":
    main()


def measure(
    base_url: str, sockets: int, queued: int, ways: tuple[str, ...], log: Callable[[str], None]
) -> dict[str, Any]:
    """Every client's figures, each from its own process: bytes per socket, request, task.

    The processes run a few at a time: they count bytes, not time, so they may share the CPU.
    """

    def run(job: tuple[str, str, int, str]) -> dict[str, Any]:
        name, kind, count, way = job
        command = [sys.executable, "-m", "benchmarks.memory", name, base_url, kind, str(count), way]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory {job} failed:\n{done.stderr}")
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    jobs = [
        (name, kind, sockets if kind == "idle" else queued, way)
        for name in CLIENTS
        for kind in ("idle", "queued")
        for way in ways
    ] + [("agent-h11", "bare_task", queued, way) for way in ways]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = dict(zip(jobs, pool.map(run, jobs), strict=True))
    results: dict[str, Any] = {"sockets": sockets, "queued": queued, "ways": list(ways)}
    clients: dict[str, Any] = {}
    for name in CLIENTS:
        figures: dict[str, Any] = {}
        for way in ways:
            idle = answers[name, "idle", sockets, way]
            waiting = answers[name, "queued", queued, way]
            if "unavailable" in idle:
                figures = {"unavailable": idle["unavailable"]}
                break
            figures[way] = {
                "per_idle_socket": idle["per_socket"],
                "sockets_opened": idle["sockets"],
                "per_queued_request": waiting["per_request"],
                "queued_seen": waiting["queued"],
            }
        clients[name] = figures
        log(f"  {name}: {figures}")
    results["clients"] = clients
    results["bare_task"] = {
        way: answers["agent-h11", "bare_task", queued, way]["per_task"] for way in ways
    }
    return results
