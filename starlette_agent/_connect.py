"""Opening a ``Connection``: a socket from the dialer (or the user's connector), then TLS.

On asyncio and uvloop the socket becomes our transport-based stream (``_asyncio_stream``), with
the TLS handshake done by the loop; on trio it becomes an anyio ``SocketStream`` and TLS is
anyio's ``TLSStream``. Every failure is an ``AgentError`` naming the origin, and no socket
outlives a failed or cancelled open.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteStream, SocketStream
from anyio.streams.tls import TLSAttribute, TLSStream

from . import _asyncio_stream as asyncio_stream
from ._connection import CLOSE_TIMEOUT, MAX_RESPONSE_HEAD_SIZE, Connection, stream_extra
from ._dial import AddressCheck, dial
from ._errors import AgentError, ConnectError, ConnectTimeout
from ._eventloop import in_trio
from ._options import Connector
from ._proxy import Proxy
from ._tunnel import open_tunnel
from ._urls import Origin
from ._wire import H11Wire, Wire

__all__ = ["ConnectTiming", "open_connection"]


@dataclass(slots=True)
class ConnectTiming:
    """When an ``open_connection`` reached each step (``time.perf_counter()``), for the hooks."""

    started: float = field(default_factory=time.perf_counter)
    connected: float | None = None  # a socket (or proxy tunnel) to the origin, before TLS
    tls_done: float | None = None  # our TLS handshake finished

    def mark_connected(self) -> None:
        if self.connected is None:
            self.connected = time.perf_counter()

    def mark_tls_done(self) -> None:
        self.tls_done = time.perf_counter()

    @property
    def connect_duration(self) -> float:
        """Seconds to a connected socket (the whole open, when TLS was not ours)."""
        end = self.connected if self.connected is not None else time.perf_counter()
        return end - self.started

    @property
    def tls_duration(self) -> float | None:
        """Seconds of our TLS handshake; None when there was none."""
        if self.tls_done is None or self.connected is None:
            return None
        return self.tls_done - self.connected


async def open_connection(
    pool_key: str,
    origin: Origin,
    *,
    ssl_context: ssl.SSLContext | None,
    connector: Connector | None,
    local_address: str | None,
    connect_timeout: float | None,
    guard: AddressCheck | None = None,
    proxy: Proxy | None = None,
    wire: Callable[[int], Wire] = H11Wire,
    timing: ConnectTiming | None = None,
) -> Connection:
    """Open a socket to ``origin`` (TCP, then TLS for https) within ``connect_timeout``.

    Through ``proxy``: an http target's requests go to the proxy in absolute form; an https
    target gets a CONNECT tunnel, and TLS to the target inside it. ``timing``, when given,
    records when the socket was connected and when TLS was done.
    """
    tls = ssl_context if origin.scheme == "https" else None
    with anyio.CancelScope() as scope:
        if connect_timeout is not None:
            scope.deadline = anyio.current_time() + connect_timeout
        if proxy is not None:
            stream = await _through_proxy(origin, proxy, tls, guard, local_address, timing)
        else:
            with _connect_errors(origin):
                if connector is not None:
                    stream = await connector(origin)
                else:
                    sock = await dial(
                        origin.host, origin.port, guard=guard, local_address=local_address
                    )
                    if timing is not None:
                        timing.mark_connected()
                    stream = await _stream_for(sock, origin, tls)
                    if timing is not None and tls is not None and not in_trio():
                        timing.mark_tls_done()  # the loop did the handshake with the wrap
        if timing is not None:
            timing.mark_connected()  # for a connector or an http proxy: once it is done
        if tls is not None and stream_extra(stream, TLSAttribute.ssl_object) is None:
            stream = await _wrap_tls(stream, origin, tls)
            if timing is not None:
                timing.mark_tls_done()
        forward = proxy if proxy is not None and tls is None else None
        return Connection(
            pool_key, origin, stream, forward_proxy=forward, wire=wire(MAX_RESPONSE_HEAD_SIZE)
        )
    raise ConnectTimeout(
        f"could not connect to {origin}{_via(proxy)} within {connect_timeout}s",
        origin=str(origin),
    )


async def _through_proxy(
    origin: Origin,
    proxy: Proxy,
    tls: ssl.SSLContext | None,
    guard: AddressCheck | None,
    local_address: str | None,
    timing: ConnectTiming | None,
) -> ByteStream:
    """A stream to ``proxy``; for an https target, tunnelled to it (TLS not started on trio)."""
    if guard is not None and guard.enabled and _is_ip_address(origin.host):
        # The proxy resolves names, out of our sight; an address we can check ourselves. The
        # proxy's own address is the operator's choice and is not refused.
        guard.check(origin.host, [origin.host])
    with _connect_errors(origin, f"cannot connect to proxy {proxy} for"):
        sock = await dial(
            proxy.origin.host, proxy.origin.port, guard=None, local_address=local_address
        )
        stream = await _stream_for(sock, proxy.origin, None)
    if tls is None:
        return stream
    try:
        with _connect_errors(origin, f"tunnel through proxy {proxy} to"):
            await open_tunnel(stream, origin, proxy)
        if timing is not None:
            timing.mark_connected()
        if isinstance(stream, asyncio_stream.AsyncioByteStream):
            with _connect_errors(origin, "TLS handshake with"):
                tunnelled = await stream.start_tls(tls, server_hostname=origin.host)
            if timing is not None:
                timing.mark_tls_done()
            return tunnelled
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream


async def _stream_for(
    sock: socket.socket, origin: Origin, tls: ssl.SSLContext | None
) -> ByteStream:
    if not in_trio():
        # From here the loop owns the socket and closes it on any failure, cancellation too,
        # but on a later turn: wait for that, so that the slot this socket holds is given
        # back only once it is shut (a replacement must not overlap it).
        try:
            return await asyncio_stream.wrap_socket(
                sock, ssl_context=tls, server_hostname=origin.host, close_timeout=CLOSE_TIMEOUT
            )
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                turns = 0
                while sock.fileno() != -1:
                    turns += 1
                    await anyio.sleep(0 if turns < 10 else 0.001)
            sock.close()  # a no-op once the loop closed it; else it never took the socket
            raise
    try:
        return await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


async def _wrap_tls(stream: ByteStream, origin: Origin, tls: ssl.SSLContext) -> ByteStream:
    try:
        with _connect_errors(origin, "TLS handshake with"):
            return await TLSStream.wrap(
                stream,
                hostname=origin.host,
                ssl_context=tls,
                # HTTP frames its own messages, so a missing close_notify cannot cut a body
                # short unnoticed except in close-delimited responses.
                standard_compatible=False,
            )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


@contextmanager
def _connect_errors(origin: Origin, what: str = "cannot connect to") -> Iterator[None]:
    try:
        yield
    except AgentError:
        raise
    except socket.gaierror as exc:
        raise ConnectError(
            f"{what} {origin}: the host name did not resolve ({exc})", origin=str(origin)
        ) from exc
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        raise ConnectError(f"{what} {origin}: {exc!r}", origin=str(origin)) from exc
    except Exception as exc:
        # A user-supplied connector failed in its own way; keep it as the cause.
        raise ConnectError(
            f"{what} {origin}: connector failed: {exc!r}", origin=str(origin)
        ) from exc


def _via(proxy: Proxy | None) -> str:
    return "" if proxy is None else f" through proxy {proxy}"


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
