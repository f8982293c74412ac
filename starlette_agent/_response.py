"""The response a caller gets back, buffered or streamed, its body decoded as it is read."""

from __future__ import annotations

import codecs
import json as jsonlib
import math
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from starlette.datastructures import Headers

from ._decoding import Decoder, decoder_for
from ._errors import (
    AgentError,
    DecodingError,
    HTTPStatusError,
    InvalidOption,
    ResponseTooLarge,
    StreamClosed,
)
from ._urls import redact_url

if TYPE_CHECKING:
    from ._request import Request

#: Statuses that send the client elsewhere (with a ``Location``): ``is_redirect``.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class BodySource(Protocol):
    """Where a streamed response's body comes from (a pooled socket, or a test double)."""

    async def receive_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end (the socket has been released)."""

    async def aclose(self) -> None:
        """Stop reading; a socket left mid-body is closed, never reused."""


class Response:
    """An HTTP response. ``request()`` returns it with ``content`` read; ``stream()`` and
    ``dispatch()`` return it with the body still to read (``aread()``) or close (``aclose()``).

    The body is decoded as it is read when the agent's ``decompress`` is on (the default):
    ``content``, ``text``, ``json()``, ``aread()``, ``aiter_bytes()`` and the text iterators
    give it decoded from its ``Content-Encoding`` (gzip, deflate, br, zstd); ``aiter_raw()``
    gives the bytes as sent. ``headers`` are always as received.

    ``reused_socket`` tells whether it came over a socket that had served an earlier request
    (Node's ``req.reusedSocket``). ``url`` is where it came from, a password in it shown as
    ``[secure]``; ``history`` the redirect responses that led here, oldest first.
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
        request: Request | None = None,
        elapsed: timedelta = timedelta(0),
        decompress: bool = True,
    ) -> None:
        """``content`` is the body as a reader gets it (already decoded); ``body`` a source to
        stream it from instead, decoded on the way when ``decompress`` is on."""
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = _as_headers(headers)
        self.url = redact_url(url)
        self.reused_socket = reused_socket
        #: The time from ``dispatch()`` to the arrival of the response head (a ``timedelta``).
        self.elapsed = elapsed
        #: The redirect responses ``request()`` or ``stream()`` followed to get here, in order.
        self.history: list[Response] = []
        self._request = request
        self._content: bytes | None = content if body is None else None
        self._body = body
        self._max_size = max_size
        self._decompress = decompress
        self._content_decoded = False  # ``_content`` is decoded: not the bytes as sent
        self._encoding: str | None = None
        self._consumed = False  # the body was handed to a reader
        self._closed = False  # the body's stream was closed

    def __repr__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"<Response [{self.status}{reason}]>"

    # -- what it is ----------------------------------------------------------------------------

    @property
    def status_code(self) -> int:
        """Alias of ``status`` for code written against Starlette or httpx."""
        return self.status

    @property
    def request(self) -> Request:
        """The request as it was sent for this response: method, URL, headers (the last hop's,
        after redirects)."""
        if self._request is None:
            raise AgentError(f"{self!r} was made without a request")
        return self._request

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        """A 301, 302, 303, 307 or 308 with a ``Location`` to go to."""
        return self.status in REDIRECT_STATUSES and "location" in self.headers

    @property
    def is_error(self) -> bool:
        """A 4xx or 5xx status."""
        return self.status >= 400

    @property
    def is_client_error(self) -> bool:
        """A 4xx status."""
        return 400 <= self.status < 500

    @property
    def is_server_error(self) -> bool:
        """A 5xx status."""
        return 500 <= self.status < 600

    def raise_for_status(self) -> Response:
        """Raise ``HTTPStatusError`` for a 4xx or 5xx response; return the response otherwise,
        so that ``(await agent.get(url)).raise_for_status().json()`` reads in one line."""
        if self.status < 400:
            return self
        kind = "client error" if self.status < 500 else "server error"
        reason = self.reason or _phrase(self.status)
        request = self._request
        sent = f" for {request.method} {self.url}" if request is not None else f" from {self.url}"
        raise HTTPStatusError(
            f"{kind} '{self.status} {reason}'{sent}", request=request, response=self
        )

    # -- the body, read ------------------------------------------------------------------------

    @property
    def content(self) -> bytes:
        """The whole body, decoded. On a streamed response, ``await aread()`` first."""
        if self._content is None:
            raise AgentError(
                f"the body of the response from {self.url} was not read; "
                "call 'await response.aread()' first, or use agent.request() instead of stream()"
            )
        return self._content

    @property
    def charset(self) -> str:
        """The ``charset`` of the ``Content-Type`` header, or ``utf-8`` when it has none."""
        return self._header_charset() or "utf-8"

    @property
    def encoding(self) -> str:
        """How ``text``, ``aiter_text()`` and ``aiter_lines()`` decode the body: the encoding
        set here, else the header's ``charset`` if Python knows it, else UTF-8."""
        if self._encoding is not None:
            return self._encoding
        charset = self._header_charset()
        if charset is not None and _known(charset):
            return charset
        return "utf-8"

    @encoding.setter
    def encoding(self, value: str) -> None:
        if not isinstance(value, str) or not _known(value):
            raise InvalidOption(f"encoding must be a text encoding Python knows, got {value!r}")
        self._encoding = value

    @property
    def text(self) -> str:
        """The body as text, in ``encoding``; undecodable bytes become U+FFFD."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    async def aread(self) -> bytes:
        """Read the rest of the body and return all of it, decoded (cached as ``content``).

        ``ResponseTooLarge`` when it grows past ``max_response_size``, as received or as
        decoded (the read stops there, so a decompression bomb never expands in memory);
        ``DecodingError`` when its encoding is corrupt. Either closes the socket.
        """
        if self._content is None:
            self._content = await self._read(self._max_size)
        return self._content

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body, decoded, piece by piece as it arrives; once only on a streamed response."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        # Leaving this loop early does not release the socket: the caller's ``stream()`` block,
        # or ``aclose()``, does, so that a ``break`` cannot close it behind the caller's back.
        async with aclosing(self._decoded(None, self._decoder())) as pieces:
            async for piece in pieces:
                yield piece

    async def aiter_raw(self) -> AsyncGenerator[bytes, None]:
        """The body as sent, still encoded, piece by piece; once only on a streamed response."""
        if self._content is not None and not self._content_decoded:
            if self._content:
                yield self._content
            return
        if self._content is not None:
            raise StreamClosed(
                f"the body of the response from {self.url} was already read and decoded; "
                "aiter_raw() gives the bytes as sent only from an unread streamed response"
            )
        body = self._take_body()
        while (chunk := await body.receive_chunk()) is not None:
            yield chunk

    async def aiter_text(self) -> AsyncGenerator[str, None]:
        """The body as text, in ``encoding``, piece by piece."""
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        async with aclosing(self.aiter_bytes()) as pieces:
            async for piece in pieces:
                text = decoder.decode(piece)
                if text:
                    yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text

    async def aiter_lines(self) -> AsyncGenerator[str, None]:
        """The body as text, line by line, without the line endings (as ``str.splitlines``)."""
        pending = ""
        async with aclosing(self.aiter_text()) as texts:
            async for text in texts:
                lines = (pending + text).splitlines(keepends=True)
                last = lines[-1]
                # A last line with no ending may go on in the next piece; one ending in CR may
                # be the first half of a CRLF.
                unended = last.splitlines()[0] == last or last.endswith("\r")
                pending = lines.pop() if unended else ""
                for line in lines:
                    yield line.splitlines()[0]
        if pending:
            yield pending.splitlines()[0]

    async def aclose(self) -> None:
        """Release the response's socket: back to the pool if fully read, else closed."""
        self._closed = True
        if self._body is not None:
            await self._body.aclose()

    # -- reading -------------------------------------------------------------------------------

    async def _keep_body(self, limit: int) -> None:
        """Read the body to free the socket, keeping it as ``content``; a body longer than
        ``limit`` (or ``max_response_size``), or corrupt, is not kept: the socket is closed."""
        cap = limit if self._max_size is None else min(limit, self._max_size)
        try:
            self._content = await self._read(cap)
        except (ResponseTooLarge, DecodingError):
            await self.aclose()

    async def _read(self, limit: int | None) -> bytes:
        """The whole body, decoded, refused past ``limit`` bytes (None: no limit)."""
        cap = math.inf if limit is None else limit
        chunks: list[bytes] = []
        size = 0
        decoder = self._decoder()
        if decoder is None:
            # As sent: no decoder, so no generator around the source either.
            body = self._take_body()
            while (chunk := await body.receive_chunk()) is not None:
                size += len(chunk)
                if size > cap:
                    await self.aclose()
                    raise self._too_large(limit)
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        async with aclosing(self._decoded(limit, decoder)) as pieces:
            async for piece in pieces:
                size += len(piece)
                if size > cap:
                    await self.aclose()
                    raise self._too_large(limit)
                chunks.append(piece)
        return b"".join(chunks)

    async def _decoded(
        self, limit: int | None, decoder: Decoder | None
    ) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, decoded by ``decoder`` (None: as sent) in bounded pieces; the
        bytes received count against ``limit`` too."""
        body = self._take_body()
        self._content_decoded = decoder is not None
        cap = math.inf if limit is None else limit
        received = 0
        try:
            while (chunk := await body.receive_chunk()) is not None:
                received += len(chunk)
                if received > cap:
                    await self.aclose()
                    raise self._too_large(limit)
                if decoder is None:
                    yield chunk
                else:
                    for piece in decoder.decode(chunk):
                        yield piece
            if decoder is not None:
                for piece in decoder.flush():
                    yield piece
        except DecodingError as exc:
            await self.aclose()  # a body we cannot read to its end cannot leave its socket reusable
            raise DecodingError(
                f"the response from {self.url}: {exc}", origin=self._origin
            ) from exc

    def _decoder(self) -> Decoder | None:
        """What decodes the body as it is read: None for a body read as sent."""
        if not self._decompress:
            return None
        # Several Content-Encoding lines are one list, as if joined by commas (RFC 9110 5.3).
        codings = self.headers.getlist("content-encoding")
        return decoder_for(", ".join(codings)) if codings else None

    def _too_large(self, limit: int | None) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"the response from {self.url} is larger than max_response_size={limit} bytes",
            origin=self._origin,
        )

    @property
    def _origin(self) -> str | None:
        return None if self._request is None else str(self._request.origin)

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

    def _header_charset(self) -> str | None:
        content_type = self.headers.get("content-type", "")
        for parameter in content_type.split(";")[1:]:
            key, _, value = parameter.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return None


def _known(encoding: str) -> bool:
    try:
        codecs.lookup(encoding)
    except LookupError:
        return False
    return True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


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
