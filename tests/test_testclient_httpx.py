"""Starlette's ``TestClient`` runs on httpx2 here (the ``test`` extra installs it); one test keeps
it on httpx, the library it falls back to, for as long as Starlette supports that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import starlette.testclient
from servers import UvicornServer

ROOT = Path(__file__).resolve().parent.parent

# Run in a process of its own: which library the TestClient is built on is decided when
# starlette.testclient is first imported.
ON_HTTPX = """
import sys
import warnings

sys.modules["httpx2"] = None  # as if httpx2 were not installed
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from starlette.testclient import TestClient
assert [str(w.message) for w in caught] == [
    "Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead."
], caught

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_agent import AgentMiddleware, AgentOptions

assert issubclass(TestClient, httpx.Client)


async def call(request: Request) -> JSONResponse:
    agent = request.state.agent
    response = await agent.get(sys.argv[1] + "/peer")
    return JSONResponse({"port": response.json()["port"], "requests": agent.stats().requests})


app = Starlette(
    routes=[Route("/", call)],
    middleware=[Middleware(AgentMiddleware, agent=AgentOptions(max_sockets=1))],
)
with TestClient(app) as client:
    answers = [client.get("/").json() for _ in range(2)]
assert [answer["requests"] for answer in answers] == [1, 2], answers
assert answers[0]["port"] == answers[1]["port"], answers
print("on httpx")
"""


def test_the_suite_runs_its_test_client_on_httpx2() -> None:
    import httpx2

    assert issubclass(starlette.testclient.TestClient, httpx2.Client)


def test_a_test_client_on_httpx_still_drives_an_app_with_its_agent(server: UvicornServer) -> None:
    result = subprocess.run(
        [sys.executable, "-c", ON_HTTPX, server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "on httpx"
    assert (server.stats.opened, server.stats.requests) == (1, 2)
