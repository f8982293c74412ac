"""SIGINT and SIGTERM under ``uvicorn.run`` close every agent before the process exits.

The app runs in a child process. An outermost ASGI wrapper records, at the moment
``lifespan.shutdown.complete`` leaves ``AgentMiddleware`` for uvicorn, whether the agent is
closed; the upstream server counts the connection closing.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from servers import UvicornServer, wait_until_sync

APP = textwrap.dedent(
    """
    import sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette_agent._dependency import get_agent
    from starlette_agent._registry import AgentRegistry
    from starlette_agent.middleware import AgentMiddleware

    UPSTREAM, PORT = sys.argv[1], int(sys.argv[2])
    registry = AgentRegistry({"default": {"idle_timeout": 60}})

    async def call(request):
        agent = await get_agent(request)
        return PlainTextResponse(str((await agent.get(UPSTREAM + "/peer")).status))

    app = Starlette(
        routes=[Route("/call", call)],
        middleware=[Middleware(AgentMiddleware, registry=registry)],
    )

    async def observer(scope, receive, send):
        agents = []

        async def observe(message):
            if message["type"] == "lifespan.startup.complete":
                agents.append(registry.get())
            if message["type"] == "lifespan.shutdown.complete":
                print("closed-before-exit:", all(a.closed for a in agents), flush=True)
            await send(message)

        await app(scope, receive, observe)

    uvicorn.run(observer, host="127.0.0.1", port=PORT, log_level="warning", lifespan="on")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_shutdown_closes_agents_before_exit(
    signum: signal.Signals, server: UvicornServer, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, str(script), server.url, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/call", timeout=5)
                break
            except httpx.TransportError:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.05)
        assert response.text == "200"
        assert server.stats.open == 1

        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=15)
    finally:
        if child.poll() is None:  # pragma: no cover - only when the test already failed
            child.kill()
            child.communicate()

    assert "closed-before-exit: True" in stdout, (stdout, stderr)
    assert wait_until_sync(lambda: server.stats.open == 0)
    assert server.stats.closed == 1
