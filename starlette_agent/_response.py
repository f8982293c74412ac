"""The response a caller gets back, buffered or streamed."""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from starlette.datastructures import Headers

from ._errors import AgentError, ResponseTooLarge, StreamClosed


class BodySource(Protocol):
    """Where a streamed response's body comes from (a pooled socket, or a test double)."""

    async def receive_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end (the socket has been released)."""

    async def aclose(self) -> None:
        """Stop reading; a socket left mid-body is closed, never reused."""


class Response:
    """An HTTP response. ``request()`` returns it with ``content`` read; ``stream()`` and
    ``dispatch()`` return it with the body still to read (``aread()``) or close (``aclose()``).

    ``reused_socket`` tells whether it came over a socket that had served an earlier request
    (Node's ``req.reusedSocket``).
    """

    def __init__(
        self,
        status: int,
        *,
        headers: Headers | Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None = None,
        content: bytes = b"",
        url: str = "",
        reason: str = "",
        http_version: str = "1.1",
        reused_socket: bool = False,
        body: BodySource | None = None,
        max_size: int | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = _as_headers(headers)
        self.url = url
        self.reused_socket = reused_socket
        self._content: bytes | None = content if body is None else None
        self._body = body
        self._max_size = max_size
        self._consumed = False  # the body was handed to a reader
        self._closed = False  # the body's stream was closed

    def __repr__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"<Response [{self.status}{reason}]>"

    @property
    def status_code(self) -> int:
        """Alias of ``status`` for code written against Starlette or httpx."""
        return self.status

    @property
    def content(self) -> bytes:
        """The whole body. On a streamed response, ``await aread()`` first."""
        if self._content is None:
            raise AgentError(
                f"the body of the response from {self.url} was not read; "
                "call 'await response.aread()' first, or use agent.request() instead of stream()"
            )
        return self._content

    @property
    def charset(self) -> str:
        content_type = self.headers.get("content-type", "")
        for parameter in content_type.split(";")[1:]:
            key, _, value = parameter.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.charset, errors="replace")
        except LookupError:  # an unknown charset in the header
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    async def aread(self) -> bytes:
        """Read the rest of the body and return all of it (cached)."""
        if self._content is None:
            body = self._take_body()
            limit = self._max_size if self._max_size is not None else math.inf
            chunks: list[bytes] = []
            size = 0
            while (chunk := await body.receive_chunk()) is not None:
                size += len(chunk)
                if size > limit:
                    await self.aclose()
                    raise ResponseTooLarge(
                        f"the response from {self.url} is larger than "
                        f"max_response_size={self._max_size} bytes"
                    )
                chunks.append(chunk)
            self._content = b"".join(chunks)
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives; once only on a streamed response."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        body = self._take_body()
        # Leaving this loop early does not release the socket: the caller's ``stream()`` block,
        # or ``aclose()``, does, so that a ``break`` cannot close it behind the caller's back.
        while (chunk := await body.receive_chunk()) is not None:
            yield chunk

    def _take_body(self) -> BodySource:
        body = self._body
        if body is None or self._consumed:
            raise StreamClosed(
                f"the body of the response from {self.url} was already read; "
                "keep what the first read returned (aread() keeps it as .content)"
            )
        if self._closed:
            raise StreamClosed(
                f"the response from {self.url} was closed before its body was read; "
                "read it inside the stream() block"
            )
        self._consumed = True
        return body

    async def aclose(self) -> None:
        """Release the response's socket: back to the pool if fully read, else closed."""
        self._closed = True
        if self._body is not None:
            await self._body.aclose()


def _as_headers(
    headers: Headers | Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None,
) -> Headers:
    if headers is None:
        return Headers()
    if isinstance(headers, Headers):
        return headers
    if isinstance(headers, Mapping):
        return Headers(headers=dict(headers))
    return Headers(raw=[(bytes(n).lower(), bytes(v)) for n, v in headers])
