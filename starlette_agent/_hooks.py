"""Trace hooks: what an agent reports as it works, for tracing, metrics and logs.

``Agent(hooks=...)`` takes an ``AgentHooks`` object, or a sequence of them, whose async methods
the agent awaits at each step of a request and of a socket's life, each with one small frozen
event: aiohttp's ``TraceConfig`` and undici's diagnostics channels, as methods of one object.
Override the methods you need; the others cost nothing (an object need not subclass
``AgentHooks``: any object with some of these async methods will do).

The contract every hook shares
------------------------------
* A hook runs after the pool has recorded what it reports, never between a decision and its
  record, and it is given values, not the pool: whatever it does, the pool stays whole.
* A hook that raises an ``Exception`` is logged (logger ``"starlette_agent"``) and the request
  goes on; the next hooks object still gets the event.
* Request hooks (``request_*``, ``queued``, ``dequeued``, ``connection_create_start``,
  ``connection_created``, ``connection_reused``) run in the task that sent the request, inside
  the caller's context (its ``contextvars``, the current span). ``connection_released`` runs in
  the task that read the end of the body; ``connection_closed`` in whichever task closed the
  socket: a request's, ``aclose()``'s, or the agent's background task that closes idle sockets.
  Keep them quick: a request waits for its hooks.
* ``request_start`` is followed by exactly one of ``request_end`` and ``request_error``; a
  ``queued`` by exactly one ``dequeued``; a ``connection_created`` by exactly one
  ``connection_closed``, with ``connection_reused`` and ``connection_released`` in between.
* Cancellation: a request cancelled while a hook awaits is cancelled (the hook is cut short at
  that await, the agent undoes the step and the cancellation goes on). A cancelled request still
  gets ``request_error`` (``event.cancelled`` is True), called while the task is being cancelled:
  the hook runs until its first await that would block, which raises the cancellation again and
  ends that hook quietly. So do what must be done (end a span, count) before any such await.
* A hook must not send requests through the agent it observes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from ._request import HeaderTypes, Request
    from ._response import Response
    from ._urls import Origin

__all__ = [
    "HOOK_NAMES",
    "AgentHooks",
    "CloseReason",
    "ConnectionClosedEvent",
    "ConnectionCreateStartEvent",
    "ConnectionCreatedEvent",
    "ConnectionReleasedEvent",
    "ConnectionReusedEvent",
    "DequeueOutcome",
    "DequeuedEvent",
    "Hooks",
    "QueuedEvent",
    "RequestEndEvent",
    "RequestErrorEvent",
    "RequestStartEvent",
    "hook_methods",
]

#: Why a socket was closed.
CloseReason: TypeAlias = Literal[
    "idle_timeout",  # idle for the agent's idle_timeout
    "keep_alive_hint",  # the server's Keep-Alive: timeout (less the buffer) ran out, or left none
    "max_requests",  # it carried max_requests_per_socket requests
    "keep_alive_off",  # the agent keeps no sockets (keep_alive=False)
    "server_closed",  # the server closed it or asked to (Connection: close, HTTP/1.0...)
    "pool_limit",  # not kept: max_free_sockets idle already, or room needed under max_total
    "unread_body",  # the caller closed its response before the end of the body
    "error",  # the exchange failed (network error, timeout, bad response, body iterator)
    "cancelled",  # the request using it was cancelled mid-exchange
    "agent_closed",  # aclose()
    "event_loop_closed",  # the event loop its sockets belong to ended
]
#: How a queued request left the queue.
DequeueOutcome: TypeAlias = Literal["granted", "timeout", "cancelled", "agent_closed"]


@dataclass(frozen=True, slots=True)
class RequestStartEvent:
    """A request is about to be sent (before it looks for a socket)."""

    request: Request
    pool_key: str  # ``Agent.get_name()`` of its URL: the pool it draws sockets from
    #: The hooks' own per-request storage: the same dict in every event of this request. Key
    #: it by your hooks object (``event.context[self] = span``).
    context: dict[Any, Any]


@dataclass(frozen=True, slots=True)
class RequestEndEvent:
    """The response head arrived; the body is still to be read."""

    request: Request  # as sent, with the headers hooks added
    pool_key: str
    context: dict[Any, Any]
    response: Response
    duration: float  # seconds since request_start
    retries: int  # times it was sent again on a new socket after a reused one was found closed

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def reused_socket(self) -> bool:
        return self.response.reused_socket


@dataclass(frozen=True, slots=True)
class RequestErrorEvent:
    """The request failed, or was cancelled, before its response head arrived."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    error: BaseException  # what the caller gets: an AgentError, the cancellation, or the
    # exception of the request body's own iterator
    cancelled: bool
    duration: float
    retries: int


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """No socket was free: the request waits in the agent's queue."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    queued: int  # requests waiting in the whole agent, this one included


@dataclass(frozen=True, slots=True)
class DequeuedEvent:
    """A queued request left the queue: it got a socket or a slot, or stopped waiting."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    waited: float  # seconds
    outcome: DequeueOutcome


@dataclass(frozen=True, slots=True)
class ConnectionCreateStartEvent:
    """The request got a free slot and opens a new socket."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    origin: Origin
    proxy: str | None  # the proxy it goes through, without credentials


@dataclass(frozen=True, slots=True)
class ConnectionCreatedEvent:
    """A new socket is open, and about to carry the request that opened it."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    origin: Origin
    connection_id: int  # the same in every event of this socket; unique among open ones
    local_port: int | None
    #: Seconds to a connected socket: name resolution and TCP (and a proxy's tunnel).
    connect_duration: float
    tls_duration: float | None  # seconds of TLS handshake; None for http, or a connector's TLS


@dataclass(frozen=True, slots=True)
class ConnectionReusedEvent:
    """An idle socket, checked alive, is about to carry the request."""

    request: Request
    pool_key: str
    context: dict[Any, Any]
    origin: Origin
    connection_id: int
    local_port: int | None
    requests: int  # requests it carried before this one


@dataclass(frozen=True, slots=True)
class ConnectionReleasedEvent:
    """A response was read to its end and its socket went back to the pool, kept for reuse
    (idle, or handed straight to a queued request, which then reports ``connection_reused``)."""

    pool_key: str
    origin: Origin
    connection_id: int
    local_port: int | None
    requests: int  # requests it has carried


@dataclass(frozen=True, slots=True)
class ConnectionClosedEvent:
    """A socket was closed (it may have been closing for a moment already)."""

    pool_key: str
    origin: Origin
    connection_id: int
    local_port: int | None
    requests: int
    reason: CloseReason
    idle: bool  # it carried no request then (it was idle, or released and not yet reused)


class AgentHooks:
    """The hooks an agent calls; subclass it and override what you need. See the module
    docstring (``docs/deployment.md``, "Tracing") for the contract they share."""

    async def request_start(self, event: RequestStartEvent) -> HeaderTypes | None:
        """A request starts. Return headers to send with it (``{"traceparent": ...}``), or
        None. They replace the request's own headers of the same names, are checked as
        ``Request`` checks headers, and may not be the ones the agent sets (``Host``, framing,
        ``Connection``, ``Upgrade``); a bad one is logged and that hook's headers are dropped."""

    async def request_end(self, event: RequestEndEvent) -> None:
        """The response head arrived (status, reused socket); the caller reads the body next."""

    async def request_error(self, event: RequestErrorEvent) -> None:
        """The request failed or was cancelled before its response head arrived."""

    async def queued(self, event: QueuedEvent) -> None:
        """The request waits in the queue for a socket (``max_sockets`` or
        ``max_total_sockets`` reached)."""

    async def dequeued(self, event: DequeuedEvent) -> None:
        """The request left the queue, with how long it waited and why it left."""

    async def connection_create_start(self, event: ConnectionCreateStartEvent) -> None:
        """The request opens a new socket."""

    async def connection_created(self, event: ConnectionCreatedEvent) -> None:
        """The new socket is open (connect and TLS times), about to carry the request."""

    async def connection_reused(self, event: ConnectionReusedEvent) -> None:
        """An idle socket is about to carry the request."""

    async def connection_released(self, event: ConnectionReleasedEvent) -> None:
        """A socket went back to the pool after its response was read to its end."""

    async def connection_closed(self, event: ConnectionClosedEvent) -> None:
        """A socket was closed, and why."""


#: Every hook, in the order of a request's life.
HOOK_NAMES: tuple[str, ...] = (
    "request_start",
    "queued",
    "dequeued",
    "connection_create_start",
    "connection_created",
    "connection_reused",
    "request_end",
    "request_error",
    "connection_released",
    "connection_closed",
)

#: What ``Agent(hooks=...)`` takes: one hooks object, or several, called in order.
Hooks: TypeAlias = "AgentHooks | Sequence[AgentHooks]"


def hook_methods(hooks: object) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """The hooks ``hooks`` implements, by name; ``AgentHooks``'s do-nothing ones are left out.

    Raises ``TypeError`` naming a hook that is not an ``async def`` method.
    """
    found: dict[str, Callable[[Any], Awaitable[Any]]] = {}
    for name in HOOK_NAMES:
        method = getattr(hooks, name, None)
        if method is None or getattr(type(hooks), name, None) is getattr(AgentHooks, name):
            continue
        if not inspect.iscoroutinefunction(method):
            raise TypeError(f"{name} of {hooks!r} must be an async method (async def)")
        found[name] = method
    return found
