"""Where an agent's CPU goes per request, by function: cProfile over small keep-alive GETs.

The agent sends ``requests`` GETs one at a time on asyncio, after a warm-up, under cProfile;
the 15 functions with the most CPU time of their own (``tottime``) are reported per request.
The profiler slows every call, so the totals are larger than the timed runs': read the shares.

    python -m benchmarks --profile                         # every parser, onto the page
    python -m benchmarks.profiling CLIENT BASE_URL REQUESTS  # one client, JSON on stdout
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from typing import Any

from .clients import BY_NAME
from .session import Unavailable
from .upstream import ROOT, SMALL_BODY
from .worker import run_requests

#: The clients profiled: the agent with each parser.
CLIENTS = ("agent-h11", "agent-httptools")
TOP = 15
PACKAGES = ("h11", "httptools", "starlette_agent", "anyio", "starlette", "asyncio", "uvloop")


def short_path(filename: str) -> str:
    """A module's path from its package down (``h11/_connection.py``); ``~`` for built-ins."""
    prefixes = [str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]]
    for prefix in prefixes:
        if filename.startswith(prefix + os.sep):
            return filename[len(prefix) + 1 :]
    return filename


def place(filename: str, line: int, function: str) -> str:
    """A function's name and where it lives, as short as still says which one it is."""
    if filename == "~":  # a built-in: cProfile names it "<built-in method ...>"
        return function
    return f"{function} ({short_path(filename)}:{line})"


def package(filename: str) -> str:
    """Whose code a function is: a package named on the page, C built-ins, or other."""
    if filename == "~":
        return "built-ins (C)"
    path = short_path(filename)
    top = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    if top == "selectors":  # the asyncio event loop's own poller
        return "asyncio"
    return top if top in PACKAGES else "other"


async def profile(name: str, url: str, requests: int) -> dict[str, Any]:
    try:
        session = await BY_NAME[name].open(url, 1)
    except Unavailable as exc:
        return {"unavailable": str(exc)}
    try:
        await run_requests(session.get, url, 50, 1, len(SMALL_BODY))
        # CPU time, not wall time: on a busy machine a send that wakes the upstream may be
        # preempted by it, and that wait is not the client's cost.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        await run_requests(session.get, url, requests, 1, len(SMALL_BODY))
        profiler.disable()
    finally:
        await session.close()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    packages: dict[str, float] = {}
    for key, entry in stats.items():
        owner = package(key[0])
        packages[owner] = packages.get(owner, 0.0) + entry[2] / total
    return {
        "requests": requests,
        "total_us": total / requests * 1e6,
        "packages": dict(sorted(packages.items(), key=lambda item: item[1], reverse=True)),
        "functions": [
            {
                "function": place(*key),
                "calls": entry[1] / requests,
                "own_us": entry[2] / requests * 1e6,
                "cumulative_us": entry[3] / requests * 1e6,
                "share": entry[2] / total,
            }
            for key, entry in rows
        ],
    }


def measure(base_url: str, requests: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Each parser's profile, each from a process of its own."""
    profiles: dict[str, Any] = {}
    for name in CLIENTS:
        command = [sys.executable, "-m", "benchmarks.profiling", name, base_url, str(requests)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"profiling {name} failed:\n{done.stderr}")
        profiles[name] = json.loads(done.stdout)
        log(f"  {name}: " + format_profile(profiles[name]).replace("\n", "\n    "))
    return {"loop": "asyncio", "concurrency": 1, "mode": "keep-alive", "clients": profiles}


def format_profile(result: dict[str, Any]) -> str:
    if "unavailable" in result:
        return f"not available: {result['unavailable']}"
    shares = ", ".join(f"{name} {share:.0%}" for name, share in result["packages"].items())
    lines = [
        f"{result['total_us']:.1f} us profiled per request; own time by package: {shares}",
        f"top {TOP} functions by own time:",
    ]
    for row in result["functions"]:
        lines.append(
            f"{row['own_us']:7.2f} us {row['share']:6.1%} {row['calls']:5.1f} calls  "
            f"{row['function']}"
        )
    return "\n".join(lines)


def main() -> None:
    name, base_url, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(profile(name, base_url + "/small", requests))))


if __name__ == "__main__":
    main()
