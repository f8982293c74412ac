"""The upstream service: what server1 and server2 call, and the witness of which socket served.

``GET /work?delay=0.2`` waits ``delay`` seconds (to make a pool's queue visible) and answers
with the peer port of the connection the call came in on. Callers name themselves in an
``x-caller`` header; ``GET /sockets`` lists every client connection seen, by peer port, with
the callers it served. Two servers sharing an agent show up on the *same* ports; an isolated
agent on ports of its own. ``GET /`` is a short page that links to these, and to the dashboards
of the servers co-hosted with it.

Run alone with ``uvicorn example_app.upstream:app --port 8000``.
"""

from __future__ import annotations

import html
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from .params import DELAY, BadParameters, bad_parameters, read_query

#: Connections remembered for /sockets, the most recent ones.
_MAX_REMEMBERED = 200


@dataclass
class SocketRecord:
    """One client connection, as the upstream saw it."""

    peer_port: int
    requests: int = 0
    callers: Counter[str] = field(default_factory=Counter)
    first_seen: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)


class Ledger:
    """Client connections by peer port, most recently used last."""

    def __init__(self) -> None:
        self.sockets: OrderedDict[int, SocketRecord] = OrderedDict()
        self.requests = 0

    def record(self, peer_port: int, caller: str) -> SocketRecord:
        record = self.sockets.pop(peer_port, None) or SocketRecord(peer_port)
        record.requests += 1
        record.callers[caller] += 1
        record.last_seen = time.monotonic()
        self.sockets[peer_port] = record
        while len(self.sockets) > _MAX_REMEMBERED:
            self.sockets.popitem(last=False)
        self.requests += 1
        return record


ledger = Ledger()


async def home(request: Request) -> HTMLResponse:
    """What this server is, with links to what it serves (and to the dashboards, co-hosted)."""
    peers: dict[str, str] = getattr(request.app.state, "peers", {})
    dashboards = "".join(
        f'<li><a href="{html.escape(url)}/">{html.escape(name)}</a>: its dashboard</li>'
        for name, url in peers.items()
    )
    return HTMLResponse(
        _HOME.format(dashboards=f"<p>Dashboards:</p><ul>{dashboards}</ul>" if peers else "")
    )


_HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>upstream · starlette-agent example</title>
<style>body {{ font: 15px/1.5 system-ui, sans-serif; margin: 2em; max-width: 44em; }}</style>
</head><body>
<h1>upstream</h1>
<p>The service that server1 and server2 call through their agents. It answers each call with
the <em>peer port</em> of the client socket that carried it, so you can tell which socket of
which agent's pool was used.</p>
<ul>
<li><a href="/sockets">/sockets</a>: every client socket it saw, by peer port, with the callers
each one served (JSON)</li>
<li><a href="/work?delay=0.2">/work?delay=0.2</a>: one call, answered after 0.2 s (JSON)</li>
</ul>
{dashboards}
</body></html>
"""


async def work(request: Request) -> JSONResponse:
    delay = read_query(request, {"delay": DELAY})["delay"]
    caller = request.headers.get("x-caller", "anonymous")
    peer_port = request.client.port if request.client else 0
    record = ledger.record(peer_port, caller)
    if delay:
        await anyio.sleep(delay)
    return JSONResponse(
        {"peer_port": peer_port, "caller": caller, "requests_on_this_socket": record.requests}
    )


async def sockets(request: Request) -> JSONResponse:
    open_ports = _open_ports(request)
    if open_ports is not None and request.client:
        open_ports.discard(request.client.port)  # the connection asking
    now = time.monotonic()
    listed: list[dict[str, Any]] = [
        {
            "peer_port": record.peer_port,
            "requests": record.requests,
            "callers": dict(record.callers),
            "open": None if open_ports is None else record.peer_port in open_ports,
            "idle_for": round(now - record.last_seen, 1),
        }
        for record in reversed(ledger.sockets.values())
    ]
    return JSONResponse(
        {
            "requests": ledger.requests,
            "connections_seen": len(ledger.sockets),
            "open": None if open_ports is None else len(open_ports),
            "sockets": listed,
        }
    )


def _open_ports(request: Request) -> set[int] | None:
    """Peer ports of the connections open right now, when the uvicorn server is known.

    ``python -m example_app`` puts its ``uvicorn.Server`` in ``app.state.server``; a uvicorn
    started from the command line does not, and then only past connections are listed.
    """
    server = getattr(request.app.state, "server", None)
    if server is None:
        return None
    ports = set()
    for connection in list(server.server_state.connections):
        client = getattr(connection, "client", None)
        if client:
            ports.add(client[1])
    return ports


app = Starlette(
    routes=[Route("/", home), Route("/work", work), Route("/sockets", sockets)],
    exception_handlers={BadParameters: bad_parameters},
    # The dashboards of server1 and server2 (other ports, so other origins) read /sockets.
    middleware=[Middleware(CORSMiddleware, allow_origins=["*"])],
)
