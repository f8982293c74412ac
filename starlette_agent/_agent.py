"""The Agent: Node's ``http.Agent`` for Python, on h11 and anyio.

The Agent carries out what its ``Pool`` decides. Every pool change happens synchronously, with
no ``await`` between deciding and recording, and every socket the pool lets go of is closed
under a cancellation shield; so a task cancelled at any await leaves the pool whole and no socket
orphaned.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Unpack, cast

import anyio
from starlette.datastructures import Headers

from ._address_guard import AddressGuard
from ._arguments import (
    AuthTypes,
    ContentTypes,
    FormTypes,
    HeaderTypes,
    ParamTypes,
    RequestParts,
    checked_follow_redirects,
    naming_the_argument_meant,
)
from ._connect import open_connection
from ._connection import Connection, ConnectionLostBeforeResponse, Timeouts
from ._defaults import BuiltRequests, build_request
from ._errors import AgentClosed, AgentError, PoolTimeout, RemoteProtocolError
from ._eventloop import current_loop, spawn_background
from ._hook_runner import RequestTrace, failure_reason, hook_runner
from ._hooks import CloseReason
from ._keepalive import keep_alive_seconds
from ._options import AgentOptionArgs, AgentOptions, resolve_options
from ._pool import Pool, PoolClosedError, Reservation, Waiter
from ._redirects import send as send_following
from ._request import Request
from ._response import Response
from ._routes import Routes
from ._stats import AgentStats, Counters
from ._urls import Origin, parse_url
from ._wire_choice import wire_for

logger = logging.getLogger("starlette_agent")

#: Seconds the hooks get to hear of the sockets closed as the event loop ends.
_HOOKS_AT_LOOP_END = 1.0


class Agent:
    """A pool of keep-alive sockets per origin, with Node's ``http.Agent`` limits and queueing.

    Use one agent for many requests: sockets are reused across them. Close it with
    ``await agent.aclose()`` or ``async with Agent() as agent:``.

    Every request goes through ``dispatch(request)``, the one method to override in a subclass
    or to call from a wrapper; ``build_request()`` makes its argument.
    """

    def __init__(
        self, options: AgentOptions | None = None, /, **changes: Unpack[AgentOptionArgs]
    ) -> None:
        """``Agent(max_sockets=10)``, ``Agent(options)``, or ``Agent(options, max_sockets=10)``
        for ``options`` with those changes; the options are validated once, into ``config``."""
        #: The options this agent was made with (``AgentOptions``), validated.
        self.config = config = resolve_options(options, changes)
        self._guard = AddressGuard(
            block_private_networks=config.block_private_networks,
            allowed_networks=config.allowed_networks,
        )
        self._pool: Pool[Connection] = Pool(
            max_sockets=config.max_sockets,
            max_total_sockets=config.max_total_sockets,
            max_free_sockets=config.max_free_sockets,
            scheduling=config.scheduling,
        )
        self._timeouts = Timeouts(
            config.connect_timeout,
            config.read_timeout,
            config.write_timeout,
            config.pool_timeout,
            config.headers_timeout,
        )
        self._counters = Counters()
        self._wire = wire_for(config.http_parser)
        self._routes = Routes(
            local_address=config.local_address,
            ssl_context=config.ssl_context,
            proxy=config.proxy,
            trust_env=config.trust_env,
        )
        self._reaper = _IdleReaper(self)
        self._hooks = hook_runner(config.hooks)  # None without hooks: one check per step
        self._built = BuiltRequests(config)
        # The event loop the sockets belong to; weak, so an agent never keeps a finished loop.
        self._loop_ref: weakref.ref[object] | None = None
        #: Set on the global agent of a loop: when that loop ends, the agent closes for good.
        self._ends_with_loop = False
        self._idle: anyio.Event | None = None  # set when the last request in flight ends

    # -- the public surface --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def __repr__(self) -> str:
        pool = self._pool
        state = " closed" if pool.closed else ""
        return (
            f"<Agent{state} [Sockets: {pool.sockets - pool.idle} active, {pool.idle} idle | "
            f"Requests: {pool.queued} queued]>"
        )

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def get_name(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> str:
        """The pool key of ``url`` (Node's ``agent.getName``): requests with the same name may
        share sockets. It holds the scheme, host and port, the local address, and for https the
        TLS identity (verification mode and which SSL context), so a socket made without
        certificate checks is never handed to a request that wants them.
        """
        return self._routes.key(parse_url(url).origin, ssl_context)

    def stats(self) -> AgentStats:
        """Sockets per origin (active, idle, queued) and running counters."""
        return AgentStats.snapshot(
            self._pool.origin_counts(), self._counters, closed=self._pool.closed
        )

    def build_request(self, method: str, url: str, **parts: Unpack[RequestParts]) -> Request:
        """A validated ``Request`` for ``dispatch``, made the agent's way, or ``InvalidRequest``
        naming what was wrong (``InvalidOption`` for a bad ``timeout``; ``InvalidOptionType``,
        also a ``TypeError``, for an unknown argument, naming the one meant).

        Nothing is sent and no socket is touched. A relative ``url`` is resolved against the
        agent's ``base_url``; ``params`` are added to its query. The agent's default
        ``headers`` go under the request's own, with ``User-Agent: starlette-agent/<version>``
        and, when ``decompress`` is on, ``Accept-Encoding``, unless they are set. The body is
        one of ``content`` (bytes, str, or an async iterable sent chunked), ``json`` and
        ``data`` (a form). ``auth=(user, password)`` sends Basic credentials; an
        ``Authorization`` header of the request's own wins over it, and it over the URL's
        ``user:password@``. ``timeout`` (seconds, or a ``Timeouts`` per phase) replaces the
        agent's connect, read, write, pool and headers timeouts for this request; None keeps
        them. ``ssl_context`` replaces the agent's for an https URL.
        """
        if not parts:
            built = self._built
            if built.config is not self.config:
                built = self._built = BuiltRequests(self.config)
            return built.build(method, url)
        return build_request(self.config, method, url, parts)

    async def dispatch(self, request: Request) -> Response:
        """Send ``request`` and return its response once the head has arrived, body unread.

        Every request goes through here: ``request()``, the verbs, ``stream()`` and the
        module-level ``request()`` are this plus reading or closing the body. So this is the
        method to override in a subclass (calling ``super().dispatch(request)``) or to call from
        a wrapper; a test double such as ``MockAgent`` is one.

        The caller owns the response: read its body (``aread()``, ``aiter_bytes()``) or close
        it (``aclose()``). Until then it holds a socket; a fully read body gives the socket back
        to the pool, a closed unread one closes it.

        Raises ``AgentError`` subclasses only, each naming the origin: ``AgentClosed`` once
        ``aclose()`` was called (or when it closes the socket under this request),
        ``ConnectError`` (``ConnectTimeout``, ``BlockedAddress``), ``PoolTimeout``,
        ``WriteTimeout``, ``ReadTimeout``, ``RemoteProtocolError``, ``RequestBodyError``; and
        ``AgentError`` itself when the agent is used from another event loop. An exception
        raised by the request's own body iterator propagates unchanged. Cancellation leaves the
        pool whole and no socket open. Each call counts in ``stats()``: a request, and an error
        if it raised an ``AgentError``. The agent's ``hooks`` see it from ``request_start`` to
        ``request_end`` or ``request_error``.
        """
        self._check_event_loop()
        self._counters.requests += 1
        if self._hooks is not None:
            key = self._routes.key(request.origin, request.ssl_context)
            return await self._hooks.traced(request, key, self._send)
        return await self._send(request, None)

    async def _send(self, request: Request, trace: RequestTrace | None) -> Response:
        timeouts = self._timeouts if request.timeouts is None else request.timeouts
        try:
            return await self._send_pooled(request, timeouts, trace)
        except AgentError as exc:
            self._counters.errors += 1
            if self._pool.closed and not isinstance(exc, AgentClosed):
                # aclose() shut this request's socket under it: say that, not "connection lost".
                raise self._closed_error(request.origin) from exc
            raise

    @naming_the_argument_meant
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send a request and read its whole response; the socket is back in the pool on return.

        ``build_request()`` then ``dispatch()`` then ``aread()``; with ``follow_redirects``
        (None: the agent's own), each redirect is dispatched in turn and the earlier responses
        are in ``response.history``. The other arguments are ``build_request``'s. A misspelt
        argument is an ``InvalidOptionType`` (a ``TypeError``) naming the one meant.
        """
        parts: RequestParts = {
            "headers": headers,
            "content": content,
            "json": json,
            "data": data,
            "params": params,
            "auth": auth,
            "timeout": timeout,
            "ssl_context": ssl_context,
        }
        response = await self._send_with_redirects(method, url, parts, follow_redirects)
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    @naming_the_argument_meant
    async def get(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("GET", url, ...)``."""
        return await self.request(
            "GET",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def head(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("HEAD", url, ...)``."""
        return await self.request(
            "HEAD",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def options(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return await self.request(
            "OPTIONS",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def post(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("POST", url, ...)``."""
        return await self.request(
            "POST",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def put(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("PUT", url, ...)``."""
        return await self.request(
            "PUT",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def patch(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("PATCH", url, ...)``."""
        return await self.request(
            "PATCH",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    async def delete(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """``request("DELETE", url, ...)``."""
        return await self.request(
            "DELETE",
            url,
            headers=headers,
            content=content,
            json=json,
            data=data,
            params=params,
            auth=auth,
            timeout=timeout,
            ssl_context=ssl_context,
            follow_redirects=follow_redirects,
        )

    @naming_the_argument_meant
    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        json: Any = None,
        data: FormTypes | None = None,
        params: ParamTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: float | Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
        follow_redirects: bool | None = None,
    ) -> AsyncIterator[Response]:
        """Send a request and yield its response before the body is read: ``dispatch()``
        (once per redirect followed), then the block, then ``aclose()``.

        Read the body with ``aiter_bytes()``, ``aiter_text()``, ``aiter_lines()``, ``aread()``
        or, as sent, ``aiter_raw()``. Leaving the block before the end of the body closes that
        socket (it cannot carry another request mid-body); a fully read body returns the socket
        to the pool. The arguments are ``request()``'s.
        """
        parts: RequestParts = {
            "headers": headers,
            "content": content,
            "json": json,
            "data": data,
            "params": params,
            "auth": auth,
            "timeout": timeout,
            "ssl_context": ssl_context,
        }
        response = await self._send_with_redirects(method, url, parts, follow_redirects)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send_with_redirects(
        self, method: str, url: str, parts: RequestParts, follow_redirects: bool | None
    ) -> Response:
        """The response to ``request()``'s arguments, redirects followed as asked, body unread."""
        follow = checked_follow_redirects(follow_redirects)
        # None is "not given" for each part; a method and URL alone take the agent's cache.
        given = cast(
            RequestParts, {name: value for name, value in parts.items() if value is not None}
        )
        request = self.build_request(method, url, **given)
        if follow is None:
            follow = self.config.follow_redirects
        return await send_following(self, request, follow_redirects=follow)

    async def wait_idle(self) -> None:
        """Return once no request is in flight or queued on this agent; at once if none is.

        In flight means connecting, sending, or holding a socket until its response body is
        read (a ``stream()`` block still open). A graceful shutdown waits for this, bounded by
        a timeout of its own (``with anyio.move_on_after(10): await agent.wait_idle()``), and
        then calls ``aclose()``. Requests that arrive meanwhile are waited for too.
        """
        while self._busy():
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def aclose(self) -> None:
        """Close every socket, idle or in use, and refuse further requests with AgentClosed."""
        if self._pool.closed:
            return
        to_close = self._pool.close()
        self._reaper.stop()
        await self._close(to_close, "agent_closed")
        counters = self._counters
        logger.debug(
            "agent closed: %d sockets closed now; %d requests, %d connections opened, %d reused",
            len(to_close),
            counters.requests,
            counters.connections_created,
            counters.connections_reused,
        )

    # -- sending -------------------------------------------------------------------------------

    def _check_event_loop(self) -> None:
        """Sockets belong to the loop that opened them; refuse to mix loops."""
        loop = current_loop()
        bound = self._loop_ref() if self._loop_ref is not None else None
        if loop is bound:
            return
        if bound is None or (self._pool.sockets == 0 and not self._reaper.running):
            self._loop_ref = weakref.ref(loop)  # nothing is tied to the old loop any more
        else:
            raise AgentError(
                "this Agent is bound to another event loop (its sockets belong to that loop); "
                "create an Agent per event loop, or use global_agent()"
            )

    async def _send_pooled(
        self, request: Request, timeouts: Timeouts, trace: RequestTrace | None
    ) -> Response:
        started = time.perf_counter()
        key = self._routes.key(request.origin, request.ssl_context)
        fresh = False
        while True:
            conn, reused = await self._checkout(key, request, timeouts, trace, fresh=fresh)
            head = request._head
            keep_alive = self.config.keep_alive
            limit = self.config.max_requests_per_socket
            if not keep_alive or (limit is not None and conn.requests_started + 1 >= limit):
                head = request._head_with_connection_close()
                keep_alive = False
            try:
                if trace is not None:
                    await trace.connection_ready(conn, reused=reused)
                response_head = await conn.send_request(head, request.body, timeouts)
            except BaseException as exc:
                if not isinstance(exc, ConnectionLostBeforeResponse):
                    await self._discard(conn, failure_reason(exc))
                    raise
                await self._discard(conn, "server_closed")
                if reused and request.retryable and not fresh:
                    # The server closed a kept-alive socket as we reused it: the request never
                    # reached it, so sending it once more on a new socket is safe.
                    self._counters.retries += 1
                    if trace is not None:
                        trace.retries += 1
                    fresh = True
                    continue
                raise self._lost_before_response(request, exc, reused=reused) from exc.__cause__
            keep_for = self._keep_for(response_head.headers) if keep_alive else 0.0
            body = _PooledBody(self, conn, timeouts.read, keep_for)
            return Response(
                response_head.status,
                headers=Headers(raw=response_head.headers),  # h11 gives lower-case names
                url=request.url,
                reason=response_head.reason,
                http_version=response_head.http_version,
                reused_socket=reused,
                body=body,
                max_size=self.config.max_response_size,
                request=request,
                elapsed=timedelta(seconds=time.perf_counter() - started),
                decompress=self.config.decompress,
            )

    def _lost_before_response(
        self, request: Request, exc: ConnectionLostBeforeResponse, *, reused: bool
    ) -> RemoteProtocolError:
        """The caller-facing error for a socket lost before any response byte (the private
        retry signal never reaches callers)."""
        if not reused:
            return RemoteProtocolError(str(exc), origin=str(request.origin))
        reason = "" if request.retryable else f"; {request.method} is not idempotent"
        return RemoteProtocolError(
            f"{request.origin}: the server closed a reused socket before responding "
            f"and the request was not retried{reason}",
            origin=str(request.origin),
        )

    async def _checkout(
        self,
        key: str,
        request: Request,
        timeouts: Timeouts,
        trace: RequestTrace | None,
        *,
        fresh: bool,
    ) -> tuple[Connection, bool]:
        """A connection for ``key``, and whether it is a reused one."""
        while True:
            try:
                granted = self._pool.acquire(key, fresh=fresh)
            except PoolClosedError:
                raise self._closed_error(request.origin) from None
            if isinstance(granted, Waiter):
                granted = await self._wait(granted, request.origin, timeouts.pool, trace)
            if isinstance(granted, Reservation):
                return await self._connect(granted, request, timeouts, trace), False
            conn = granted
            expired = conn.idle_deadline <= conn.clock()
            if not expired and not conn.has_unexpected_input():
                self._counters.connections_reused += 1
                return conn, True
            # Expired, or the server closed it (or spoke unasked) while it sat idle.
            await self._discard(conn, "idle_timeout" if expired else "server_closed")

    async def _wait(
        self,
        waiter: Waiter[Connection],
        origin: Origin,
        pool_timeout: float | None,
        trace: RequestTrace | None,
    ) -> Connection | Reservation[Connection]:
        event = anyio.Event()
        waiter.wake = event.set
        try:
            if trace is not None:
                await trace.queued(self._pool.queued)
            with anyio.fail_after(pool_timeout):
                await event.wait()
            if trace is not None:
                closed = waiter.grant is None or isinstance(waiter.grant, PoolClosedError)
                await trace.dequeued("agent_closed" if closed else "granted")
        except BaseException as exc:
            queued = self._pool.queued
            # Hand on whatever may have been granted while the cancellation was in flight.
            await self._close(self._pool.cancel(waiter), "pool_limit")
            if trace is not None:
                await trace.dequeued("timeout" if isinstance(exc, TimeoutError) else "cancelled")
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(
                    f"{origin}: no socket became free within {pool_timeout}s "
                    f"({queued} requests queued)",
                    origin=str(origin),
                ) from None
            raise
        grant = waiter.grant
        if grant is None or isinstance(grant, PoolClosedError):
            raise self._closed_error(origin)
        return grant

    async def _connect(
        self,
        reservation: Reservation[Connection],
        request: Request,
        timeouts: Timeouts,
        trace: RequestTrace | None,
    ) -> Connection:
        try:
            if reservation.evicted is not None:
                evicted, reservation.evicted = reservation.evicted, None
                await self._close([evicted], "pool_limit")
            proxy = self._routes.proxy_for(request.origin)
            timing = None
            if trace is not None:
                shown = None if proxy is None else str(proxy)
                timing = await trace.connection_create_start(request.origin, shown)
            conn = await open_connection(
                reservation.key,
                request.origin,
                ssl_context=self._routes.ssl_context_for(request.origin, request.ssl_context),
                proxy=proxy,
                connector=self.config.connector,
                local_address=self.config.local_address,
                connect_timeout=timeouts.connect,
                guard=self._guard,
                wire=self._wire,
                timing=timing,
            )
        except BaseException:
            # Give the slot back, or it would count as a socket forever (httpcore #1093).
            await self._close(self._pool.connect_failed(reservation), "pool_limit")
            raise
        if not self._pool.connected(reservation, conn):
            await conn.aclose()
            raise self._closed_error(request.origin)
        self._counters.connections_created += 1
        self._reaper.start()
        return conn

    # -- giving sockets back -------------------------------------------------------------------

    async def _release(self, conn: Connection, *, reusable: bool, keep_for: float) -> None:
        if reusable and keep_for > 0:
            conn.idle_deadline = conn.clock() + keep_for
            to_close = self._pool.release(conn, reusable=True)
            if conn not in to_close:
                self._reaper.schedule(conn.idle_deadline)
        else:
            to_close = self._pool.release(conn, reusable=False)
        hooks = self._hooks
        if hooks is None or not to_close:
            if to_close:
                await self._close(to_close, "pool_limit")
            else:
                self._wake_idle_waiters()  # as _close would: wait_idle() ends if this was the last
            if hooks is not None:
                idle_timeout = self.config.idle_timeout
                hinted = idle_timeout is not None and keep_for < idle_timeout
                await hooks.released(conn, hinted=hinted)
        else:
            await self._close(to_close, self._not_kept_reason(conn, reusable, keep_for))

    def _not_kept_reason(self, conn: Connection, reusable: bool, keep_for: float) -> CloseReason:
        """Why ``conn``, whose response was read to its end, was not kept for reuse."""
        limit = self.config.max_requests_per_socket
        if not self.config.keep_alive:
            return "keep_alive_off"
        if limit is not None and conn.requests_started >= limit:
            return "max_requests"
        if not reusable:
            return "server_closed"
        if keep_for <= 0:
            return "keep_alive_hint"
        return "agent_closed" if self._pool.closed else "pool_limit"

    async def _discard(self, conn: Connection, reason: CloseReason) -> None:
        await self._close(self._pool.discard(conn), reason)

    async def _close(self, conns: list[Connection], reason: CloseReason) -> None:
        """Close ``conns``, which the pool let go of, and tell the hooks why."""
        if not conns:
            self._wake_idle_waiters()
            return
        closed: list[Connection] | None = None if self._hooks is None else []
        try:
            with anyio.CancelScope(shield=True):
                for conn in conns:
                    if not conn.closed:
                        self._counters.connections_closed += 1
                        if closed is not None:
                            closed.append(conn)
                        await conn.aclose()
                    self._pool.close_done(conn)
        finally:
            # A native asyncio Task.cancel() pierces anyio's shield: whatever it cut short is
            # reset now, and every slot is still given back.
            for conn in conns:
                if not conn.closed:
                    self._counters.connections_closed += 1
                    if closed is not None:
                        closed.append(conn)
                conn.abort_now()
                self._pool.close_done(conn)
            self._wake_idle_waiters()
            if self._hooks is not None and closed:
                # After the pool and the counters are settled, outside the shield.
                await self._hooks.closed(closed, reason)

    def _busy(self) -> bool:
        """Whether a request is in flight (connecting, sending, or its body unread) or queued."""
        pool = self._pool
        return pool.sockets > pool.idle or pool.queued > 0

    def _wake_idle_waiters(self) -> None:
        if self._idle is not None and not self._busy():
            self._idle.set()
            self._idle = None

    async def _event_loop_ending(self) -> None:
        """The loop this agent's sockets belong to is ending: close them now.

        Idle sockets are reset (requests still running are being cancelled by the same
        shutdown, and close their own). The global agent of that loop closes for good. Resets
        need no await where the stream allows, as a loop that is shutting down may not run
        another step for us.
        """
        pool = self._pool
        if self._ends_with_loop:
            to_close = pool.close()
            self._reaper.stop()
        else:
            to_close = pool.expire(math.inf)
        closed = [conn for conn in to_close if not conn.closed]
        with anyio.CancelScope(shield=True):
            for conn in to_close:
                self._counters.connections_closed += not conn.closed
                if not conn.abort_now():
                    await conn.aclose()
                pool.close_done(conn)
            if self._hooks is not None and closed:
                with anyio.move_on_after(_HOOKS_AT_LOOP_END):
                    await self._hooks.closed(closed, "event_loop_closed")
        if not pool.sockets:
            self._loop_ref = None

    # -- keep-alive ------------------------------------------------------------------------------

    def _keep_for(self, headers: list[tuple[bytes, bytes]]) -> float:
        """Seconds a socket may stay idle after this response (0: do not keep it)."""
        idle_timeout = self.config.idle_timeout
        keep = math.inf if idle_timeout is None else idle_timeout
        hinted = keep_alive_seconds(headers)
        if hinted is not None:
            keep = min(keep, hinted - self.config.keep_alive_timeout_buffer)
        return keep

    def _closed_error(self, origin: Origin) -> AgentClosed:
        return AgentClosed(
            f"the agent was closed; cannot send a request to {origin}", origin=str(origin)
        )


class _PooledBody:
    """A response body read from a pooled socket, which it releases exactly once."""

    __slots__ = ("_agent", "_conn", "_done", "_keep_for", "_read_timeout")

    def __init__(
        self, agent: Agent, conn: Connection, read_timeout: float | None, keep_for: float
    ) -> None:
        self._agent = agent
        self._conn = conn
        self._read_timeout = read_timeout
        self._keep_for = keep_for
        self._done = False

    async def receive_chunk(self) -> bytes | None:
        if self._done:
            return None
        try:
            chunk = await self._conn.receive_body_chunk(self._read_timeout)
        except BaseException as exc:
            self._done = True
            await self._agent._discard(self._conn, failure_reason(exc))
            if isinstance(exc, AgentError) and self._agent.closed:
                raise self._agent._closed_error(self._conn.origin) from exc
            raise
        if chunk is None:
            self._done = True
            reusable = self._conn.finish_cycle()
            await self._agent._release(self._conn, reusable=reusable, keep_for=self._keep_for)
        return chunk

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await self._agent._discard(self._conn, "unread_body")


class _IdleReaper:
    """Closes idle sockets when their time is up, and every socket when the event loop ends.

    One background task per agent, running while the agent has sockets (the first connection
    starts it). It sleeps until the earliest idle deadline; a release whose deadline is earlier
    moves that wake-up forward. Being a loop-level task, only the loop itself cancels it, when it
    ends (``asyncio.run`` returning, a trio run finishing): the sockets belong to that loop and
    die with it, so they are closed then rather than left open for the life of the process.
    """

    # Wake a little late rather than early: timers may fire a hair before their deadline.
    SLACK = 0.005

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._running = False
        self._stopped = False
        self._sleep: anyio.CancelScope | None = None

    def start(self) -> None:
        if not self._running and not self._stopped:
            self._running = True
            spawn_background(self._run)

    def schedule(self, deadline: float) -> None:
        if self._stopped or deadline == math.inf:
            return
        if not self._running:
            self.start()
        elif self._sleep is not None and deadline + self.SLACK < self._sleep.deadline:
            self._sleep.deadline = deadline + self.SLACK

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def _run(self) -> None:
        agent = self._agent
        pool = agent._pool
        try:
            while not self._stopped:
                deadline = pool.next_deadline()
                if deadline is None:
                    if not pool.sockets:
                        break
                    # Sockets are in use and will come back: wait for them rather than exit
                    # and be spawned again, once per request, on every release.
                    deadline = math.inf
                with anyio.CancelScope(deadline=deadline + self.SLACK) as self._sleep:
                    await anyio.sleep_forever()
                self._sleep = None
                if self._stopped:
                    break
                expired = pool.expire(anyio.current_time())
                agent._counters.idle_timeouts += len(expired)
                await agent._close(expired, "idle_timeout")
        except anyio.get_cancelled_exc_class():
            await agent._event_loop_ending()
        except Exception:
            # A background task has nobody to raise to: say so, and let requests carry on.
            logger.exception("idle socket reaper failed")
        finally:
            self._running = False
            self._sleep = None
