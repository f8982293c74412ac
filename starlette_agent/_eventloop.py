"""The little we need to know about the running event loop, on asyncio and on trio.

anyio has no detached tasks, by design: every task belongs to a task group. An agent, though, is
created and used from handlers without a task group of its own, and still has to close idle
sockets on time when no request comes. So the idle reaper runs as a loop-level task: an asyncio
task, or a trio system task (which trio cancels when the run ends).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

_running_tasks: set[asyncio.Task[None]] = set()  # strong refs: asyncio keeps only weak ones


def in_trio() -> bool:
    """Whether the running event loop is trio's (anyio's other backend is asyncio)."""
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


def current_loop() -> object:
    """An object that identifies the running event loop; raises RuntimeError outside one."""
    if in_trio():
        return sys.modules["trio"].lowlevel.current_trio_token()
    return asyncio.get_running_loop()


def current_clock() -> Callable[[], float]:
    """The running loop's clock function: the time base of anyio's cancel-scope deadlines."""
    if in_trio():
        clock: Callable[[], float] = sys.modules["trio"].current_time
        return clock
    return asyncio.get_running_loop().time


def spawn_background(task: Callable[[], Awaitable[None]]) -> None:
    """Run ``task`` in the background of the current event loop; it must not raise."""
    if in_trio():
        sys.modules["trio"].lowlevel.spawn_system_task(task)
        return

    async def run() -> None:
        await task()

    background = asyncio.get_running_loop().create_task(run())
    _running_tasks.add(background)
    background.add_done_callback(_running_tasks.discard)
