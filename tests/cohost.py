"""Serving apps under test with real uvicorn servers, several in one event loop.

``serve(app1, app2, ...)`` starts one ``uvicorn.Server`` per app in the *calling* event loop
(asyncio), with the lifespan on, as a process that co-hosts apps does; it yields their base URLs.
``stop(url)`` shuts one down early (the others keep serving), the way a process stops one app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import uvicorn
from servers import LOCALHOST, wait_until

from starlette_agent import Agent


@dataclass
class Hosted:
    """The running servers: ``urls[i]`` serves ``apps[i]``."""

    servers: list[uvicorn.Server]
    urls: list[str]

    async def stop(self, index: int) -> None:
        """Shut down server ``index`` (its lifespan shutdown included) and wait until it is."""
        server = self.servers[index]
        server.should_exit = True
        assert await wait_until(lambda: _stopped(server), timeout=10)


def _stopped(server: uvicorn.Server) -> bool:
    """``serve()`` returned: sockets closed and the lifespan shutdown finished."""
    return bool(getattr(server, "_cohost_done", False))


@contextlib.asynccontextmanager
async def serve(*apps: Any, lifespan: str = "on") -> AsyncIterator[Hosted]:
    """Serve each of ``apps`` on 127.0.0.1 on its own uvicorn server, in this event loop."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=LOCALHOST,
                port=0,
                lifespan=lifespan,
                log_level="warning",
                access_log=False,
            )
        )
        for app in apps
    ]
    # uvicorn installs signal handlers only in the main thread's own ``run``; ``serve`` under
    # our loop must not take over the test process's signals.
    for server in servers:
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]

    async def run(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when the lifespan startup fails
            pass
        finally:
            server._cohost_done = True  # type: ignore[attr-defined]

    failed = False
    async with anyio.create_task_group() as tg:
        for server in servers:
            tg.start_soon(run, server)
        await wait_until(lambda: all(s.started or _stopped(s) for s in servers), timeout=10)
        if not all(s.started for s in servers):
            failed = True
            for server in servers:
                server.should_exit = True
        else:
            urls = [
                f"http://{LOCALHOST}:{s.servers[0].sockets[0].getsockname()[1]}" for s in servers
            ]
            try:
                yield Hosted(servers, urls)
            finally:
                for server in servers:
                    server.should_exit = True
    if failed:
        raise RuntimeError("an app server did not start (see the lifespan error above)")


async def get_json(client: Agent, url: str) -> Any:
    """GET ``url`` and return its JSON body, failing on a non-200 answer."""
    response = await client.get(url)
    assert response.status == 200, (response.status, response.text)
    return response.json()
