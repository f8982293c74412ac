"""``AgentTransport``: an httpx2 or httpx ``AsyncClient`` that sends through an agent's pools.

    import httpx2
    from starlette_agent.httpx import AgentTransport

    async with httpx2.AsyncClient(transport=AgentTransport(agent)) as client:
        response = await client.get("http://users.internal/users/1")

The client keeps doing what it does (its headers, auth, cookies, redirects, decompression,
``raise_for_status``); the agent does the sockets (its pools, limits, queue, timeouts, retries of
stale sockets, proxy, TLS and address checks). So nothing is done twice: each request is sent
with ``agent.dispatch``, which follows no redirect, and its body is handed back as sent
(``aiter_raw``), for the client to decode. The agent's ``base_url``, default headers,
``follow_redirects`` and ``decompress`` apply only to its own ``request()``, never here.

One transport serves both libraries: httpx2, the maintained continuation of httpx, and httpx;
it is an ``AsyncBaseTransport`` of each one installed, and answers each request with the
library that request came from, its errors included. Neither is a dependency of this package:
``pip install 'starlette-agent[httpx]'`` installs httpx2; this module needs one of the two.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

from ._agent import Agent
from ._connection import Timeouts
from ._errors import (
    AgentError,
    AgentTimeout,
    BlockedAddress,
    ConnectError,
    ConnectTimeout,
    InvalidOptionType,
    InvalidRequest,
    PoolTimeout,
    ProxyError,
    ReadTimeout,
    RemoteProtocolError,
    RequestBodyError,
    WriteTimeout,
)
from ._request import Request
from ._response import Response

__all__ = ["AgentTransport"]

#: The libraries installed, httpx2 first.
LIBRARIES: dict[str, ModuleType] = {}
for _name in ("httpx2", "httpx"):
    with suppress(ImportError):
        LIBRARIES[_name] = importlib.import_module(_name)
if not LIBRARIES:  # pragma: no cover - both are test extras here
    raise ImportError(
        "starlette_agent.httpx needs httpx2 (or httpx): pip install 'starlette-agent[httpx]'"
    )

if TYPE_CHECKING:
    import httpx
    import httpx2

    class _TransportBase(httpx2.AsyncBaseTransport, httpx.AsyncBaseTransport):  # type: ignore[misc]
        pass

    class _StreamBase(httpx2.AsyncByteStream, httpx.AsyncByteStream):
        pass

else:
    _TransportBase = type(
        "_TransportBase", tuple(lib.AsyncBaseTransport for lib in LIBRARIES.values()), {}
    )
    _StreamBase = type("_StreamBase", tuple(lib.AsyncByteStream for lib in LIBRARIES.values()), {})

#: The agent's errors and the library errors they become (the first that matches); any other
#: ``AgentError`` becomes the library's ``TransportError``.
ERROR_MAP: tuple[tuple[type[AgentError], str], ...] = (
    (ConnectTimeout, "ConnectTimeout"),
    (ReadTimeout, "ReadTimeout"),
    (WriteTimeout, "WriteTimeout"),
    (PoolTimeout, "PoolTimeout"),
    (AgentTimeout, "TimeoutException"),
    (ProxyError, "ProxyError"),
    (ConnectError, "ConnectError"),
    (BlockedAddress, "ConnectError"),  # refused before connecting: nothing was sent
    (RemoteProtocolError, "RemoteProtocolError"),
    (RequestBodyError, "LocalProtocolError"),
    (InvalidRequest, "LocalProtocolError"),
)


class AgentTransport(_TransportBase):
    """An ``AsyncBaseTransport`` of httpx2 and httpx that sends each request through ``agent``.

    ``httpx2.AsyncClient(transport=AgentTransport(agent))`` (or ``httpx.AsyncClient``). Both
    ways stream: a request body the client streams is sent chunked as it comes (or with its
    ``Content-Length``, when the client set one), and the response body reaches the client as
    it arrives; closing the response releases the socket (to the pool when the body was read
    to its end). The client's ``timeout`` (its ``connect``, ``read``, ``write`` and ``pool``;
    ``read`` also bounds the wait for the response head) replaces the agent's timeouts for that
    request; without one the agent's own apply. Agent errors become the client library's:
    ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``, ``PoolTimeout``, ``ProxyError``,
    ``ConnectError``, ``RemoteProtocolError``, ``LocalProtocolError``, and ``TransportError``
    for the rest, with the agent's error as ``__cause__``.

    The client's connection settings (``limits``, ``verify``, ``cert``, ``proxy``, ``http2``)
    are its default transport's and do nothing here: configure the agent instead. Closing the
    client leaves the agent open: it is shared, and closed by whoever made it.
    """

    def __init__(self, agent: Agent) -> None:
        if not isinstance(agent, Agent):
            raise InvalidOptionType(f"AgentTransport takes an Agent, got {agent!r}")
        self.agent = agent

    def __repr__(self) -> str:
        return f"<AgentTransport {self.agent!r}>"

    @overload
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response: ...

    @overload
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...

    async def handle_async_request(self, request: Any) -> Any:
        """Send ``request`` with ``agent.dispatch`` and return the response, body unread."""
        library = _library_of(request)
        with _mapped_errors(library, request):
            response = await self.agent.dispatch(await _agent_request(request, library))
        return library.Response(
            status_code=response.status,
            headers=response.headers.raw,
            stream=_AgentStream(response, library, request),
            extensions={
                "http_version": f"HTTP/{response.http_version}".encode("ascii"),
                "reason_phrase": response.reason.encode("latin-1"),
            },
        )

    async def aclose(self) -> None:
        """Nothing to close: the sockets are the agent's, and so is closing them."""


class _AgentStream(_StreamBase):
    """A response body as the agent receives it, still encoded, for the client to decode."""

    def __init__(self, response: Response, library: ModuleType, request: Any) -> None:
        self._response = response
        self._library = library
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._library, self._request):
            async for chunk in self._response.aiter_raw():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


def _library_of(request: object) -> ModuleType:
    for library in LIBRARIES.values():
        if isinstance(request, library.Request):
            return library
    raise InvalidOptionType(
        f"AgentTransport takes an httpx2 or httpx Request, got {type(request).__name__}"
    )


async def _agent_request(request: Any, library: ModuleType) -> Request:
    """The agent's ``Request`` for an httpx one: its URL without credentials (the client sent
    them as a header, if at all), its headers less ``Transfer-Encoding`` (the agent frames a
    streamed body itself; a ``Content-Length`` the client set is kept, and held to), its body,
    and its timeouts."""
    url = request.url
    if url.scheme not in ("http", "https"):
        raise library.UnsupportedProtocol(
            f"AgentTransport sends http:// and https:// URLs, not {url.scheme}://",
            request=request,
        )
    host = url.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    port = "" if url.port is None else f":{url.port}"
    target = f"{url.scheme}://{host}{port}{url.raw_path.decode('ascii')}"
    headers = [(n, v) for n, v in request.headers.raw if n.lower() != b"transfer-encoding"]
    content: bytes | AsyncIterator[bytes] | None
    if isinstance(request.stream, library.ByteStream):
        content = b"".join([chunk async for chunk in request.stream])
        if not content and not any(n.lower() == b"content-length" for n, _ in headers):
            content = None  # no body at all (a GET), rather than an empty one
    else:
        content = _body(request.stream)
    return Request(
        request.method,
        target,
        headers=headers,
        content=content,
        timeout=_timeouts(request.extensions.get("timeout")),
    )


async def _body(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


def _timeouts(timeout: dict[str, float | None] | None) -> Timeouts | None:
    if not timeout:
        return None
    read = timeout.get("read")
    return Timeouts(
        connect=timeout.get("connect"),
        read=read,
        write=timeout.get("write"),
        pool=timeout.get("pool"),
        headers=read,
    )


@contextmanager
def _mapped_errors(library: ModuleType, request: Any) -> Iterator[None]:
    try:
        yield
    except AgentError as exc:
        name = next((name for kind, name in ERROR_MAP if isinstance(exc, kind)), "TransportError")
        raise getattr(library, name)(str(exc), request=request) from exc
