"""Calling an agent's hooks: building their events, and keeping a hook's failure out of the way.

An agent with hooks has one ``HookRunner`` (without hooks it has None, and checks for that once
per step, which is all hooks cost it); each request it sends then gets a ``RequestTrace``, which
carries the request's events. The runner also follows which sockets are idle, so that a
``connection_closed`` can say whether the socket was idle and whether its idle time came from
the server's Keep-Alive hint.

Each hook is awaited in turn. An ``Exception`` from one is logged, and the others still run. A
cancellation (or other ``BaseException``) that reaches one is held until every hook has had the
event, then raised, so that the agent undoes the step. When the agent is already unwinding from a
cancellation (the hooks run in its ``except`` or ``finally``), a hook's cancellation is that same
one again, and is dropped: the agent goes on raising the one it is handling.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._connect import ConnectTiming
from ._errors import InvalidRequest
from ._hooks import (
    HOOK_NAMES,
    AgentHooks,
    CloseReason,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionCreateStartEvent,
    ConnectionReleasedEvent,
    ConnectionReusedEvent,
    DequeuedEvent,
    DequeueOutcome,
    QueuedEvent,
    RequestEndEvent,
    RequestErrorEvent,
    RequestStartEvent,
    hook_methods,
)
from ._request import Request, with_headers

if TYPE_CHECKING:
    from ._connection import Connection
    from ._response import Response
    from ._urls import Origin

__all__ = ["HookRunner", "RequestTrace", "failure_reason", "hook_runner"]

logger = logging.getLogger("starlette_agent")

Call = Callable[[Any], Awaitable[Any]]


def hook_runner(hooks: AgentHooks | Sequence[AgentHooks] | None) -> HookRunner | None:
    """The runner for ``hooks``; None when they implement no hook at all."""
    if hooks is None:
        return None
    runner = HookRunner(hooks if isinstance(hooks, Sequence) else (hooks,))
    return runner if any(runner.calls.values()) else None


def failure_reason(exc: BaseException) -> CloseReason:
    """Why a socket in use is closed after ``exc`` interrupted its exchange."""
    return "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "error"


class HookRunner:
    """One agent's hooks: for each hook, the methods to call, in order (empty: none)."""

    def __init__(self, hooks: Iterable[object]) -> None:
        implemented = [hook_methods(each) for each in hooks]
        self.calls: dict[str, tuple[Call, ...]] = {
            name: tuple(methods[name] for methods in implemented if name in methods)
            for name in HOOK_NAMES
        }
        # Sockets released and not reused since (by id), and those of them whose idle time was
        # cut by the server's Keep-Alive hint. Every socket leaves both at its close.
        self._idle: set[int] = set()
        self._hinted: set[int] = set()

    async def traced(
        self,
        request: Request,
        pool_key: str,
        send: Callable[[Request, RequestTrace], Awaitable[Response]],
    ) -> Response:
        """``send(request, trace)`` between ``request_start`` and ``request_end`` or
        ``request_error``."""
        trace = RequestTrace(self, request, pool_key)
        try:
            request = await trace.start()
            response = await send(request, trace)
        except BaseException as exc:
            await trace.failed(exc)
            raise
        try:
            await trace.ended(response)
        except BaseException:
            await response.aclose()  # cancelled in request_end: the caller never gets it
            raise
        return response

    async def released(self, conn: Connection, *, hinted: bool) -> None:
        """``conn`` went back to the pool for reuse; ``hinted``: for the time the server's
        Keep-Alive hint allows, shorter than the agent's idle timeout."""
        key = id(conn)
        self._idle.add(key)
        if hinted:
            self._hinted.add(key)
        calls = self.calls["connection_released"]
        if calls:
            event = ConnectionReleasedEvent(
                conn.pool_key, conn.origin, key, conn.local_port, conn.requests_started
            )
            await _emit(calls, [event])

    def reused(self, conn: Connection) -> None:
        key = id(conn)
        self._idle.discard(key)
        self._hinted.discard(key)

    async def closed(self, conns: list[Connection], reason: CloseReason) -> None:
        """The agent closed ``conns``, each once, for ``reason``."""
        events = []
        for conn in conns:
            key = id(conn)
            idle = key in self._idle
            hinted = key in self._hinted
            self._idle.discard(key)
            self._hinted.discard(key)
            why: CloseReason = "keep_alive_hint" if hinted and reason == "idle_timeout" else reason
            events.append(
                ConnectionClosedEvent(
                    conn.pool_key,
                    conn.origin,
                    key,
                    conn.local_port,
                    conn.requests_started,
                    why,
                    idle,
                )
            )
        calls = self.calls["connection_closed"]
        if calls:
            await _emit(calls, events)


class RequestTrace:
    """One request's events: what it carries from one hook to the next."""

    __slots__ = (
        "_queued_at",
        "_runner",
        "_started",
        "connect_timing",
        "context",
        "pool_key",
        "request",
        "retries",
    )

    def __init__(self, runner: HookRunner, request: Request, pool_key: str) -> None:
        self._runner = runner
        self.request = request
        self.pool_key = pool_key
        self.context: dict[Any, Any] = {}
        self.retries = 0
        self.connect_timing: ConnectTiming | None = None
        self._started = time.perf_counter()
        self._queued_at: float | None = None

    async def start(self) -> Request:
        """Run ``request_start``; the request to send, with the headers the hooks added."""
        calls = self._runner.calls["request_start"]
        if not calls:
            return self.request
        event = RequestStartEvent(self.request, self.pool_key, self.context)
        request = self.request
        for call, headers in zip(calls, await _emit(calls, [event]), strict=True):
            if headers is None:
                continue
            try:
                request = with_headers(request, headers)
            except InvalidRequest as exc:
                logger.error("hook %s returned headers that cannot be sent: %s", _name(call), exc)
        self.request = request
        return request

    async def ended(self, response: Response) -> None:
        calls = self._runner.calls["request_end"]
        if calls:
            duration = time.perf_counter() - self._started
            event = RequestEndEvent(
                self.request, self.pool_key, self.context, response, duration, self.retries
            )
            await _emit(calls, [event])

    async def failed(self, exc: BaseException) -> None:
        calls = self._runner.calls["request_error"]
        if calls:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            duration = time.perf_counter() - self._started
            event = RequestErrorEvent(
                self.request, self.pool_key, self.context, exc, cancelled, duration, self.retries
            )
            await _emit(calls, [event])

    async def queued(self, queued: int) -> None:
        self._queued_at = time.perf_counter()
        calls = self._runner.calls["queued"]
        if calls:
            await _emit(calls, [QueuedEvent(self.request, self.pool_key, self.context, queued)])

    async def dequeued(self, outcome: DequeueOutcome) -> None:
        """The request left the queue (once: later calls do nothing)."""
        if self._queued_at is None:
            return
        waited = time.perf_counter() - self._queued_at
        self._queued_at = None
        calls = self._runner.calls["dequeued"]
        if calls:
            event = DequeuedEvent(self.request, self.pool_key, self.context, waited, outcome)
            await _emit(calls, [event])

    async def connection_create_start(self, origin: Origin, proxy: str | None) -> ConnectTiming:
        """Run the hook; the timing for the connection being opened."""
        calls = self._runner.calls["connection_create_start"]
        if calls:
            event = ConnectionCreateStartEvent(
                self.request, self.pool_key, self.context, origin, proxy
            )
            await _emit(calls, [event])
        self.connect_timing = timing = ConnectTiming()
        return timing

    async def connection_ready(self, conn: Connection, *, reused: bool) -> None:
        """``conn`` is about to carry the request: ``connection_reused`` or
        ``connection_created``."""
        if reused:
            self._runner.reused(conn)
            calls = self._runner.calls["connection_reused"]
            if calls:
                reused_event = ConnectionReusedEvent(*self._on(conn), conn.requests_started)
                await _emit(calls, [reused_event])
            return
        timing, self.connect_timing = self.connect_timing, None
        calls = self._runner.calls["connection_created"]
        if calls and timing is not None:
            created_event = ConnectionCreatedEvent(
                *self._on(conn), timing.connect_duration, timing.tls_duration
            )
            await _emit(calls, [created_event])

    def _on(self, conn: Connection) -> tuple[Request, str, dict[Any, Any], Origin, int, int | None]:
        """The fields a socket's event for this request starts with."""
        return self.request, self.pool_key, self.context, conn.origin, id(conn), conn.local_port


async def _emit(calls: tuple[Call, ...], events: list[Any]) -> list[Any]:
    """Await each of ``calls`` with each of ``events``; what each call returned for the last
    event (None where it raised). See the module docstring for what happens to exceptions."""
    # Asking anyio for its cancellation class costs more than the rest of an event together:
    # only when an exception is being handled, or a hook raised one, is it needed.
    handling = sys.exc_info()[1]
    unwinding = handling is not None and isinstance(handling, anyio.get_cancelled_exc_class())
    held: BaseException | None = None
    results: list[Any] = []
    for event in events:
        results = []
        for call in calls:
            try:
                results.append(await call(event))
            except Exception:
                # The event is not logged: its request may hold credentials in its URL.
                logger.exception("hook %s failed on %s", _name(call), type(event).__name__)
                results.append(None)
            except BaseException as exc:
                results.append(None)
                if unwinding and isinstance(exc, anyio.get_cancelled_exc_class()):
                    continue
                if held is None:
                    held = exc
    if held is not None:
        raise held
    return results


def _name(call: Call) -> str:
    return getattr(call, "__qualname__", repr(call))
