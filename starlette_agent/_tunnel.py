"""A ``CONNECT`` tunnel through an HTTP proxy, for an ``https://`` target (RFC 9110 9.3.6).

The proxy is asked for a tunnel to the target's ``host:port``; once it answers 2xx, the stream
carries the target's bytes end to end and TLS to the target starts inside it. Any other answer
is a ``ProxyError`` with its status (407: the proxy wants credentials; 403: it forbids the
target; 502: it could not reach it). The proxy's credentials go in this request only.
"""

from __future__ import annotations

import anyio
import h11
from anyio.abc import ByteStream

from ._errors import ProxyError
from ._proxy import Proxy
from ._urls import Origin

__all__ = ["open_tunnel"]

# A proxy's answer to CONNECT is a short head; anything larger is not a proxy we understand.
_MAX_ANSWER_SIZE = 16 * 1024


async def open_tunnel(stream: ByteStream, target: Origin, proxy: Proxy) -> None:
    """Ask ``proxy`` (at the other end of ``stream``) for a tunnel to ``target``."""
    authority = target.authority.encode("ascii")
    headers = [(b"host", authority)]
    if proxy.authorization is not None:
        headers.append((b"proxy-authorization", proxy.authorization))
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_ANSWER_SIZE)
    request = h11.Request(method=b"CONNECT", target=authority, headers=headers)
    await stream.send((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
    answer = await _read_answer(stream, conn, target, proxy)
    if not 200 <= answer.status_code < 300:
        reason = answer.reason.decode("latin-1")
        raise ProxyError(
            f"proxy {proxy} refused a tunnel to {target}: {answer.status_code} {reason}".rstrip(),
            proxy=str(proxy),
            status=answer.status_code,
            origin=str(target),
        )
    if conn.trailing_data[0]:
        raise ProxyError(
            f"proxy {proxy} sent bytes into the tunnel to {target} before TLS started",
            proxy=str(proxy),
            origin=str(target),
        )


async def _read_answer(
    stream: ByteStream, conn: h11.Connection, target: Origin, proxy: Proxy
) -> h11.Response:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _broken(proxy, target, f"malformed answer: {exc}") from exc
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await stream.receive(65536))
            except anyio.EndOfStream:
                conn.receive_data(b"")
            except (OSError, anyio.BrokenResourceError) as exc:
                raise _broken(proxy, target, f"connection lost ({exc!r})") from exc
        elif type(event) is h11.Response:
            return event
        elif type(event) is not h11.InformationalResponse:
            raise _broken(proxy, target, "closed the connection without answering")


def _broken(proxy: Proxy, target: Origin, what: str) -> ProxyError:
    return ProxyError(
        f"proxy {proxy}, asked for a tunnel to {target}: {what}",
        proxy=str(proxy),
        origin=str(target),
    )
