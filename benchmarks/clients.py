"""The clients compared, each opened as a ``Session`` with its defaults.

A default is raised only where it would cap a client below the run's concurrency: httpx and
httpx2 keep 20 idle connections unless told otherwise, so they are told to keep as many as the
run has requests in flight; everything else is as a user gets it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import floor, h11_loop
from .session import BadResponse, Session, Unavailable


@dataclass(frozen=True)
class Client:
    name: str  # the key in the results
    label: str  # what tables and charts call it
    package: str  # whose version the page reports
    open: Callable[[str, int], Awaitable[Session]]  # (base URL, concurrency) -> a new session


def agent_options(http_parser: str) -> dict[str, Any]:
    """The Agent options that select ``http_parser``; Unavailable if this Agent cannot."""
    from starlette_agent import AgentOptions

    if "http_parser" in AgentOptions.names():
        return {"http_parser": http_parser}
    if http_parser == "h11":  # the only parser of an agent without the option
        return {}
    raise Unavailable("this version of Agent has no http_parser option")


def agent_session(**options: Any) -> Callable[[str, int], Awaitable[Session]]:
    """Sessions of an ``Agent(**options)``, a new agent each; Unavailable if it refuses them."""

    async def open_session(base_url: str, concurrency: int) -> Session:
        from starlette_agent import Agent, AgentError

        try:
            agent = Agent(**options)
        except AgentError as exc:
            raise Unavailable(str(exc)) from exc

        async def get(url: str) -> int:
            response = await agent.get(url)
            if response.status != 200:
                raise BadResponse(f"status {response.status}")
            return len(response.content)

        return Session(get, agent.aclose)

    return open_session


def _agent(http_parser: str) -> Callable[[str, int], Awaitable[Session]]:
    async def open_session(base_url: str, concurrency: int) -> Session:
        return await agent_session(**agent_options(http_parser))(base_url, concurrency)

    return open_session


async def _aiohttp(base_url: str, concurrency: int) -> Session:
    try:
        import aiohttp
    except ImportError as exc:
        raise Unavailable("aiohttp is not installed") from exc
    session = aiohttp.ClientSession()

    async def get(url: str) -> int:
        async with session.get(url) as response:
            if response.status != 200:
                raise BadResponse(f"status {response.status}")
            return len(await response.read())

    return Session(get, session.close)


def _httpx_like(module_name: str) -> Callable[[str, int], Awaitable[Session]]:
    async def open_session(base_url: str, concurrency: int) -> Session:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise Unavailable(f"{module_name} is not installed") from exc
        limits = module.Limits(
            max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency)
        )
        client = module.AsyncClient(limits=limits)

        async def get(url: str) -> int:
            response = await client.get(url)
            if response.status_code != 200:
                raise BadResponse(f"status {response.status_code}")
            return len(response.content)

        return Session(get, client.aclose)

    return open_session


CLIENTS: list[Client] = [
    Client("agent-h11", "agent (h11)", "h11", _agent("h11")),
    Client("agent-httptools", "agent (httptools)", "httptools", _agent("httptools")),
    Client("aiohttp", "aiohttp", "aiohttp", _aiohttp),
    Client("httpx", "httpx", "httpx", _httpx_like("httpx")),
    Client("httpx2", "httpx2", "httpx2", _httpx_like("httpx2")),
    Client("h11-loop", "bare h11 loop", "h11", h11_loop.open_session),
    Client("floor", "raw asyncio floor", "", floor.open_session),
]
BY_NAME = {client.name: client for client in CLIENTS}


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package) if package else None
    except importlib.metadata.PackageNotFoundError:
        return None
