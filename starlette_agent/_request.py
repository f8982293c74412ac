"""Turning the caller's arguments into a request that is safe to put on the wire.

Everything is checked here, before a socket is chosen: a request that fails validation opens no
connection and costs no pool slot. Messages name the part that was wrong.
"""

from __future__ import annotations

import json as jsonlib
import re
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import h11

from ._errors import InvalidRequest
from ._urls import Origin, parse_url

HeaderTypes: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
ContentTypes: TypeAlias = bytes | bytearray | memoryview | str | AsyncIterable[bytes]

# RFC 9110 token: method and header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")
# Retrying these after a connection failure cannot do a thing twice (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# Framing is ours to set; a caller's copy could disagree with the body and desync the socket.
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


@dataclass(slots=True, eq=False)
class PreparedRequest:
    """A validated request: its origin, its h11 head and its body."""

    method: str
    url: str
    origin: Origin
    headers: list[tuple[bytes, bytes]]
    body: bytes | AsyncIterable[bytes] | None
    head: h11.Request
    ssl_context: ssl.SSLContext | None = None

    @property
    def retryable(self) -> bool:
        """Safe to send again on a new socket: idempotent, and its body can be replayed."""
        return self.method in IDEMPOTENT_METHODS and not isinstance(self.body, AsyncIterable)

    def head_with_connection_close(self) -> h11.Request:
        """The same head, asking the server to close the socket after its response."""
        headers = [(n, v) for n, v in self.headers if n.lower() != b"connection"]
        headers.append((b"connection", b"close"))
        return _h11_head(self.head.method, self.head.target, tuple(headers))


def prepare_request(
    method: str,
    url: str,
    *,
    headers: HeaderTypes | None = None,
    content: ContentTypes | None = None,
    json: Any = None,
    ssl_context: ssl.SSLContext | None = None,
) -> PreparedRequest:
    """Validate and assemble a request, or raise ``InvalidRequest`` naming what was wrong."""
    method_bytes = _method(method)
    parsed = parse_url(url)
    body, framing = _body(content, json, method_bytes)
    header_list = _headers(headers)
    names = {name.lower() for name, _ in header_list}
    if names & _FRAMING_HEADERS:
        if not isinstance(body, AsyncIterable):
            raise InvalidRequest(
                "Content-Length and Transfer-Encoding are set by the agent from the body; "
                "remove them from headers"
            )
        framing = [(n, v) for n, v in header_list if n.lower() in _FRAMING_HEADERS]
        header_list = [(n, v) for n, v in header_list if n.lower() not in _FRAMING_HEADERS]
    extra: list[tuple[bytes, bytes]] = []
    if b"host" not in names:
        extra.append((b"host", parsed.host_header))
    if parsed.authorization is not None and b"authorization" not in names:
        extra.append((b"authorization", parsed.authorization))
    if json is not None and b"content-type" not in names:
        extra.append((b"content-type", b"application/json"))
    all_headers = extra + header_list + framing
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise InvalidRequest(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
    try:
        head = _h11_head(method_bytes, parsed.target, tuple(all_headers))
    except h11.LocalProtocolError as exc:
        raise InvalidRequest(f"invalid request to {parsed.origin}: {exc}") from exc
    return PreparedRequest(
        method=method_bytes.decode("ascii"),
        url=url,
        origin=parsed.origin,
        headers=all_headers,
        body=body,
        head=head,
        ssl_context=ssl_context,
    )


@lru_cache(maxsize=256)
def _h11_head(
    method: bytes, target: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> h11.Request:
    # h11 validates every header of every event it builds; services send the same few requests
    # again and again, and an h11 event is immutable, so build each distinct head once.
    return h11.Request(method=method, target=target, headers=list(headers))


def _method(method: str) -> bytes:
    if not isinstance(method, str):
        raise InvalidRequest(f"method must be a str, got {type(method).__name__}: {method!r}")
    try:
        encoded = method.upper().encode("ascii")
    except UnicodeEncodeError:
        raise InvalidRequest(f"method {method!r} is not an ASCII token") from None
    if not _TOKEN.fullmatch(encoded):
        raise InvalidRequest(f"method {method!r} is not a valid HTTP token")
    return encoded


def _headers(headers: HeaderTypes | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items: Iterable[tuple[Any, Any]]
    if isinstance(headers, Mapping):
        items = headers.items()
    elif isinstance(headers, str | bytes):
        raise InvalidRequest("headers must be a mapping or a list of (name, value) pairs")
    else:
        items = headers
    result: list[tuple[bytes, bytes]] = []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidRequest(f"header {item!r} is not a (name, value) pair") from None
        raw_name = _encode_header_part(name, "name", name)
        raw_value = _encode_header_part(value, "value", name)
        if not _TOKEN.fullmatch(raw_name):
            raise InvalidRequest(f"header name {name!r} is not a valid HTTP token")
        if _FORBIDDEN_IN_VALUE.search(raw_value):
            raise InvalidRequest(f"header {name!r} value contains a CR, LF or NUL character")
        result.append((raw_name, raw_value.strip(b" \t")))
    return result


def _encode_header_part(part: object, what: str, name: object) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        try:
            return part.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"header {name!r} {what} has characters outside Latin-1; encode it first"
            ) from None
    if what == "value" and isinstance(part, int) and not isinstance(part, bool):
        return str(part).encode("ascii")
    raise InvalidRequest(f"header {what} must be str or bytes, got {part!r}")


def _body(
    content: ContentTypes | None, json: Any, method: bytes
) -> tuple[bytes | AsyncIterable[bytes] | None, list[tuple[bytes, bytes]]]:
    if content is not None and json is not None:
        raise InvalidRequest("pass either content or json, not both")
    if json is not None:
        try:
            content = jsonlib.dumps(json, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"json body is not serialisable: {exc}") from exc
    if content is None:
        if method.decode("ascii") in _METHODS_WITH_BODY:
            return b"", [(b"content-length", b"0")]
        return None, []
    if isinstance(content, str):
        content = content.encode("utf-8")
    if isinstance(content, bytearray | memoryview):
        content = bytes(content)
    if isinstance(content, bytes):
        return content, [(b"content-length", str(len(content)).encode("ascii"))]
    if isinstance(content, AsyncIterable):
        return content, [(b"transfer-encoding", b"chunked")]
    raise InvalidRequest(
        f"content must be bytes, str or an async iterable of bytes, got {type(content).__name__}"
    )
