"""server1 and server2: two Starlette apps whose handlers call the upstream through agents.

Both are built by ``create_app`` around the one ``settings.registry``, so both inject the same
``"default"`` agent: one pool of sockets, shared. ``server2`` adds ``/isolated/call`` and
``/isolated/burst``, whose per-route ``AgentMiddleware(agent="isolated")`` injects the registry's
``"isolated"`` agent instead: another pool, other sockets.

Routes: ``/`` the dashboard, ``/agents`` what the agents hold (JSON, polled by the dashboard),
``/metrics`` the same for Prometheus, ``GET /call?delay=0`` one call to the upstream,
``POST /burst?n=50&delay=0.2`` n concurrent calls (n from 1 to 1000, delay from 0 to 5 s;
anything else is refused with a 422 naming it).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_agent import Agent, AgentError, AgentMiddleware, get_agent
from starlette_agent.prometheus import AgentCollector

from . import settings
from .params import DELAY, BadParameters, Bounded, bad_parameters, read_query

logger = logging.getLogger("example_app")
if not logger.handlers:
    # The example's own lines (bursts, agents closed) show under plain ``uvicorn`` too, which
    # configures only its own loggers.
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

_DASHBOARD = Path(__file__).with_name("dashboard.html")
_CALL = {"delay": DELAY}
_BURST = {"n": Bounded(1, 1000, default=50, integer=True), "delay": replace(DELAY, default=0.2)}

#: Which co-hosted apps use which agent, in this process: agent name -> app names.
users: dict[str, set[str]] = {}

#: What ``/metrics`` shows: every agent of the registry, per origin. Its own registry, not
#: prometheus_client's global one, so that the page shows the agents and nothing else.
metrics_registry = CollectorRegistry()
metrics_registry.register(AgentCollector(settings.registry))


def create_app(name: str, *, isolated_route: bool = False) -> Starlette:
    """An app called ``name`` using ``settings.registry``; with ``isolated_route``, also the
    ``/isolated/...`` routes on the ``"isolated"`` agent."""
    agent_names = ["default", "isolated"] if isolated_route else ["default"]
    routes = [
        Route("/", dashboard),
        Route("/agents", agents),
        Route("/metrics", metrics),
        Route("/call", _call_handler(name, "default")),
        Route("/burst", _burst_handler(name, "default"), methods=["POST"]),
    ]
    bursts = [{"path": "/burst", "agent": "default"}]
    if isolated_route:
        per_route = [Middleware(AgentMiddleware, agent="isolated")]
        routes += [
            Route("/isolated/call", _call_handler(name, "isolated"), middleware=per_route),
            Route(
                "/isolated/burst",
                _burst_handler(name, "isolated"),
                methods=["POST"],
                middleware=per_route,
            ),
        ]
        bursts.append({"path": "/isolated/burst", "agent": "isolated"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Runs inside AgentMiddleware's lifespan: the registry's agents are open here.
        for agent_name in agent_names:
            users.setdefault(agent_name, set()).add(name)
        yield
        for agent_name in agent_names:
            users.get(agent_name, set()).discard(name)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={BadParameters: bad_parameters},
        middleware=[
            # The dashboard of one server may fire bursts at the other (another origin).
            Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"]),
            Middleware(LogAgentsClosed, server=name, agent_names=agent_names),
            Middleware(AgentMiddleware, registry=settings.registry),
        ],
    )
    app.state.name = name
    app.state.upstream_url = settings.UPSTREAM_URL
    app.state.peers = {}  # other co-hosted servers' URLs, set by example_app.cohost
    app.state.bursts = bursts
    return app


# --------------------------------------------------------------------------- handlers


async def dashboard(request: Request) -> HTMLResponse:
    return HTMLResponse(_DASHBOARD.read_text(encoding="utf-8"))


async def agents(request: Request) -> JSONResponse:
    """Every agent of the registry in this process: its identity, limits and ``stats()``."""
    state = request.app.state
    listed = []
    for agent_name in settings.registry.names:
        agent = settings.registry.get(agent_name)
        listed.append(
            {
                "name": agent_name,
                "id": f"{id(agent):#x}",
                "repr": repr(agent),
                "used_by": sorted(users.get(agent_name, ())),
                "limits": _limits(agent),
                **agent.stats().as_dict(),
            }
        )
    return JSONResponse(
        {
            "server": state.name,
            "pid": os.getpid(),
            "upstream": state.upstream_url,
            "peers": state.peers,
            "bursts": state.bursts,
            "agents": listed,
        }
    )


async def metrics(request: Request) -> Response:
    """The registry's agents in Prometheus' text format, for a scraper."""
    return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)


def _limits(agent: Agent) -> dict[str, Any]:
    options = agent.config
    return {
        "max_sockets": options.max_sockets,
        "max_total_sockets": options.max_total_sockets,
        "max_free_sockets": options.max_free_sockets,
        "idle_timeout": options.idle_timeout,
        "scheduling": options.scheduling,
    }


Handler = Callable[[Request], Awaitable[Response]]


def _call_handler(server: str, agent_name: str) -> Handler:
    caller = f"{server} ({agent_name} agent)"

    async def call(request: Request) -> JSONResponse:
        delay = read_query(request, _CALL)["delay"]
        agent = await get_agent(request)
        try:
            response = await agent.get(
                f"{request.app.state.upstream_url}/work?delay={delay}",
                headers={"x-caller": caller},
            )
        except AgentError as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
        return JSONResponse(
            {"agent": agent_name, "reused_socket": response.reused_socket, **response.json()}
        )

    return call


def _burst_handler(server: str, agent_name: str) -> Handler:
    caller = f"{server} ({agent_name} agent)"

    async def burst(request: Request) -> JSONResponse:
        query = read_query(request, _BURST)
        count, delay = int(query["n"]), query["delay"]
        agent = await get_agent(request)
        url = f"{request.app.state.upstream_url}/work?delay={delay}"
        ports: Counter[int] = Counter()
        errors: Counter[str] = Counter()
        reused = 0

        async def one() -> None:
            nonlocal reused
            try:
                response = await agent.get(url, headers={"x-caller": caller})
            except AgentError as exc:
                errors[type(exc).__name__] += 1
                return
            ports[response.json()["peer_port"]] += 1
            reused += response.reused_socket

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
        elapsed = time.perf_counter() - started
        logger.info(
            "%s: %d calls through agent %r in %.2f s over %d socket(s) (peer ports %s)%s",
            server,
            count,
            agent_name,
            elapsed,
            len(ports),
            ", ".join(str(port) for port in sorted(ports)) or "none",
            f", errors {dict(errors)}" if errors else "",
        )
        return JSONResponse(
            {
                "server": server,
                "agent": agent_name,
                "calls": count,
                "seconds": round(elapsed, 3),
                "reused_socket": reused,
                "peer_ports": {str(port): n for port, n in sorted(ports.items())},
                "errors": dict(errors),
            }
        )

    return burst


# --------------------------------------------------------------------------- shutdown log


class LogAgentsClosed:
    """Logs, when the app has shut down, whether each of its agents is closed.

    Sits above ``AgentMiddleware``, which closes the agents before it passes
    ``lifespan.shutdown.complete`` on; so by the time that message reaches this middleware the
    agents are either closed or still held by another co-hosted app.
    """

    def __init__(self, app: ASGIApp, *, server: str, agent_names: list[str]) -> None:
        self.app = app
        self.server = server
        self.agent_names = agent_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        opened: dict[str, Agent] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                opened.update({name: settings.registry.get(name) for name in self.agent_names})
                logger.info(
                    "%s started, using agent(s) %s", self.server, ", ".join(self.agent_names)
                )
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self._log(opened)
            await send(message)

        await self.app(scope, receive, watch)

    def _log(self, opened: dict[str, Agent]) -> None:
        for name, agent in opened.items():
            stats = agent.stats()
            if agent.closed:
                logger.info(
                    "%s stopped: agent %r closed (%d requests, %d connections opened, %d reused)",
                    self.server,
                    name,
                    stats.requests,
                    stats.connections_created,
                    stats.connections_reused,
                )
            else:
                logger.info(
                    "%s stopped: agent %r stays open for the other apps using it (%s)",
                    self.server,
                    name,
                    ", ".join(sorted(users.get(name, ()))) or "none",
                )
