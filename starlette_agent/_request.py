"""Turning the caller's arguments into a request that is safe to put on the wire.

Everything is checked here, before a socket is chosen: a request that fails validation opens no
connection and costs no pool slot. Messages name the part that was wrong.
"""

from __future__ import annotations

import json as jsonlib
import math
import re
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping
from functools import lru_cache
from typing import Any, Unpack

import h11
from starlette.datastructures import Headers

from ._arguments import (
    ContentTypes,
    FormTypes,
    HeaderTypes,
    RequestParts,
    basic_authorization,
    check_arguments,
    encode_form,
    with_params,
)
from ._connection import Timeouts
from ._errors import InvalidOption, InvalidOptionType, InvalidRequest
from ._urls import Origin, parse_url, redact_url

__all__ = ["ContentTypes", "HeaderTypes", "Request", "buffered", "copied", "validate_headers"]

# RFC 9110 token: method and header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than tab: CR and LF split headers, and parsers disagree on the rest.
_CONTROL_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTENT_LENGTH_DIGITS = 18  # any length that fits in a signed 64-bit integer
_CONTENT_LENGTH = re.compile(rf"[0-9]{{1,{_CONTENT_LENGTH_DIGITS}}}", re.ASCII)
# Retrying these after a connection failure cannot do a thing twice (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})


class Request:
    """An HTTP request, validated and ready to send: what ``Agent.dispatch`` takes.

    Build one with ``agent.build_request(...)`` (or ``Request(...)``, which takes the same
    arguments); both check everything first and raise ``InvalidRequest`` naming what was wrong,
    so a request that exists can be put on the wire. Treat it as a value: to change a request,
    build a new one.

    ``headers`` are the headers as sent, ``Host`` and the framing headers included (the agent
    adds ``Connection: close`` when the socket is not to be kept after this exchange).
    ``timeouts`` of None means the agent's own; ``timeout=5`` sets every phase to five seconds,
    and a ``Timeouts`` sets each phase. ``ssl_context`` of None means the agent's.
    """

    __slots__ = (
        "_head",
        "body",
        "method",
        "origin",
        "raw_headers",
        "ssl_context",
        "target",
        "timeouts",
        "url",
    )

    method: str
    """The method, upper-case."""
    url: str
    """The URL as given."""
    origin: Origin
    """Where the request goes: scheme, host and port."""
    target: bytes
    """The request target sent on the request line: path and query."""
    raw_headers: list[tuple[bytes, bytes]]
    """The headers as sent, as (name, value) byte pairs in order."""
    body: bytes | AsyncIterable[bytes] | None
    """The body: bytes, an async iterable sent chunked (read once), or None."""
    timeouts: Timeouts | None
    """This request's timeouts; None for the agent's."""
    ssl_context: ssl.SSLContext | None
    """The SSL context for an https URL; None for the agent's."""

    def __init__(self, method: str, url: str, **parts: Unpack[RequestParts]) -> None:
        check_arguments(parts, sending=False)
        method_bytes = _method(method)
        url = with_params(url, parts.get("params"))
        parsed = parse_url(url)
        json = parts.get("json")
        data = parts.get("data")
        body = _body(parts.get("content"), json, data)
        if body is None and method_bytes in _METHODS_WITH_BODY:
            body = b""
        header_list, framing = _framing(_headers(parts.get("headers")), body)
        names = {name.lower() for name, _ in header_list}
        extra: list[tuple[bytes, bytes]] = []
        if b"host" not in names:
            extra.append((b"host", parsed.host_header))
        # One rule for credentials: the most explicit wins. An Authorization header of the
        # request's own, then auth=, then the URL's user:password@.
        auth = parts.get("auth")
        if b"authorization" not in names:
            if auth is not None:
                extra.append((b"authorization", basic_authorization(auth)))
            elif parsed.authorization is not None:
                extra.append((b"authorization", parsed.authorization))
        if b"content-type" not in names:
            if json is not None:
                extra.append((b"content-type", b"application/json"))
            elif data is not None:
                extra.append((b"content-type", b"application/x-www-form-urlencoded"))
        all_headers = extra + header_list + framing
        ssl_context = parts.get("ssl_context")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise InvalidOptionType(
                f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}",
                option="ssl_context",
            )
        timeout = parts.get("timeout")
        timeouts = None if timeout is None else _timeouts(timeout)
        try:
            head = _h11_head(method_bytes, parsed.target, tuple(all_headers))
        except h11.LocalProtocolError as exc:
            raise InvalidRequest(f"invalid request to {parsed.origin}: {exc}") from exc
        self.method = method_bytes.decode("ascii")
        self.url = url
        self.origin = parsed.origin
        self.target = parsed.target
        self.raw_headers = all_headers
        self.body = body
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self._head = head

    def __repr__(self) -> str:
        return f"<Request {self.method} {redact_url(self.url)}>"

    @property
    def headers(self) -> Headers:
        """The headers as sent, case-insensitive (``request.headers["host"]``)."""
        return Headers(raw=self.raw_headers)

    @property
    def retryable(self) -> bool:
        """Safe to send again on a new socket: idempotent, and its body can be replayed."""
        return self.method in IDEMPOTENT_METHODS and not isinstance(self.body, AsyncIterable)

    def _head_with_connection_close(self) -> h11.Request:
        """The h11 head, asking the server to close the socket after its response."""
        headers = [(n, v) for n, v in self.raw_headers if n.lower() != b"connection"]
        headers.append((b"connection", b"close"))
        return _h11_head(self._head.method, self._head.target, tuple(headers))


async def buffered(request: Request) -> Request:
    """``request`` with a streamed body read into bytes, so that it can be sent again (a stream
    is read once). The framing headers stay as they were: a chunked body is still sent chunked."""
    body = request.body
    if body is None or isinstance(body, bytes):
        return request
    copy = copied(request)
    copy.body = b"".join([bytes(chunk) async for chunk in body])
    return copy


def copied(request: Request) -> Request:
    """A new ``Request`` equal to ``request``, sharing nothing a caller could change in place
    (its header list is its own)."""
    copy = Request.__new__(Request)
    copy.method = request.method
    copy.url = request.url
    copy.origin = request.origin
    copy.target = request.target
    copy.raw_headers = list(request.raw_headers)
    copy.body = request.body
    copy.timeouts = request.timeouts
    copy.ssl_context = request.ssl_context
    copy._head = request._head
    return copy


#: Headers the agent writes itself: framing, routing and the connection's own state.
_AGENT_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


def with_headers(request: Request, headers: HeaderTypes) -> Request:
    """``request`` with ``headers`` set, each replacing the request's headers of that name.

    They are checked as ``Request`` checks headers (``InvalidRequest`` naming what was wrong);
    the ones the agent writes itself (``Host``, framing, ``Connection``, ``Upgrade``) are refused.
    """
    added = _headers(headers)
    names: set[bytes] = set()
    for name, _ in added:
        lowered = name.lower()
        if lowered in _AGENT_HEADERS or lowered == b"upgrade":
            shown = name.decode("latin-1")
            raise InvalidRequest(f"header {shown!r} is set by the agent and cannot be added")
        names.add(lowered)
    all_headers = [(n, v) for n, v in request.raw_headers if n.lower() not in names] + added
    try:
        # Not the cached builder: added headers (a trace id) differ on every request.
        head = h11.Request(method=request._head.method, target=request.target, headers=all_headers)
    except h11.LocalProtocolError as exc:
        raise InvalidRequest(f"invalid request to {request.origin}: {exc}") from exc
    copy = copied(request)
    copy.raw_headers = all_headers
    copy._head = head
    return copy


def _timeouts(timeout: object) -> Timeouts:
    """A request's ``timeout``, checked as an agent's timeouts are: ``InvalidOption`` (or
    ``InvalidOptionType`` for a wrong type) naming it, before anything is sent."""
    expected = "a number of seconds > 0, a Timeouts, or None for the agent's timeouts"
    if isinstance(timeout, Timeouts):
        for phase in Timeouts.__dataclass_fields__:
            seconds = getattr(timeout, phase)
            if seconds is not None:
                _seconds(seconds, f"Timeouts.{phase}", "a number of seconds > 0 or None")
        return timeout
    _seconds(timeout, "timeout", expected)
    return Timeouts.all(timeout)  # type: ignore[arg-type]


def _seconds(value: object, name: str, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOptionType(f"{name} must be {expected}; got {value!r}", option="timeout")
    if not 0 < value < math.inf:  # also refuses nan
        raise InvalidOption(f"{name} must be {expected}; got {value!r}", option="timeout")


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
    # ASCII first: str.upper() maps some non-ASCII letters to ASCII ones (U+017F to "S").
    if not method.isascii():
        raise InvalidRequest(f"method {method!r} is not an ASCII token")
    encoded = method.upper().encode("ascii")
    if not _TOKEN.fullmatch(encoded):
        raise InvalidRequest(f"method {method!r} is not a valid HTTP token")
    if encoded == b"CONNECT":
        raise InvalidRequest(
            "the CONNECT method turns the connection into a tunnel; the agent does not support "
            "protocol upgrades or tunnels (open one with a connector)"
        )
    return encoded


def validate_headers(headers: HeaderTypes | None) -> list[tuple[bytes, bytes]]:
    """``headers`` as validated (name, value) byte pairs, or ``InvalidRequest`` naming the bad
    one: names are tokens, values have no control characters but tab, both fit in Latin-1."""
    return _headers(headers)


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
        try:
            result.append(_known_header(name, value))
        except TypeError:  # unhashable, so neither str, bytes nor int: refused below
            result.append(_header(name, value))
    return result


@lru_cache(maxsize=1024, typed=True)
def _known_header(name: object, value: object) -> tuple[bytes, bytes]:
    # A service sends the same few headers (its User-Agent, Accept-Encoding, a token) with
    # every request: each distinct one is checked once.
    return _header(name, value)


def _header(name: object, value: object) -> tuple[bytes, bytes]:
    raw_name = _encode_header_part(name, "name", name)
    raw_value = _encode_header_part(value, "value", name)
    if not _TOKEN.fullmatch(raw_name):
        raise InvalidRequest(f"header name {name!r} is not a valid HTTP token")
    control = _CONTROL_IN_VALUE.search(raw_value)
    if control:
        raise InvalidRequest(
            f"header {name!r} value contains the control character {control.group()!r}; "
            "only horizontal tab is allowed"
        )
    return raw_name, raw_value.strip(b" \t")


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


def _framing(
    headers: list[tuple[bytes, bytes]], body: bytes | AsyncIterable[bytes] | None
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Split off the caller's framing headers and return ``(other headers, framing headers)``.

    The framing is the agent's: a caller's Content-Length is kept only as the promise it makes
    (checked against a bytes body now, held to a streamed body by h11 as it is sent) and is
    sent in canonical form. A body-less request carries ``Content-Length: 0`` only when the
    caller asked for it or the method expects a body.
    """
    declared: int | None = None
    declared_text = ""
    hosts = 0
    rest: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            raise InvalidRequest(
                "Transfer-Encoding is set by the agent (chunked for an async iterable body); "
                "remove it from headers"
            )
        if lowered == b"content-length":
            if declared is not None:
                raise InvalidRequest("more than one Content-Length header; send one, or none")
            declared_text = value.decode("latin-1")
            declared = _content_length(declared_text)
            continue
        if lowered == b"upgrade":
            raise InvalidRequest(
                "the Upgrade header asks to switch protocols; the agent does not support "
                "protocol upgrades (WebSocket, h2c), remove it"
            )
        if lowered == b"host":
            hosts += 1
            if hosts > 1:
                raise InvalidRequest("more than one Host header; send one, or none")
        rest.append((name, value))
    if isinstance(body, AsyncIterable):
        if declared is None:
            return rest, [(b"transfer-encoding", b"chunked")]
        return rest, [(b"content-length", str(declared).encode("ascii"))]
    length = 0 if body is None else len(body)
    if declared is not None and declared != length:
        raise InvalidRequest(
            f"Content-Length: {declared_text} does not match the body ({length} bytes); "
            "leave Content-Length out and the agent sets it"
        )
    if body is None and declared is None:
        return rest, []
    return rest, [(b"content-length", str(length).encode("ascii"))]


def _content_length(text: str) -> int:
    # One plain decimal number: no sign, no list, no spaces; parsers that read "+5" or "5, 5"
    # differently are how one request is smuggled inside another (RFC 9112 6.3).
    if not _CONTENT_LENGTH.fullmatch(text):
        raise InvalidRequest(
            f"Content-Length {text!r} is not one decimal number of bytes (at most "
            f"{_CONTENT_LENGTH_DIGITS} digits)"
        )
    return int(text)


def _body(
    content: ContentTypes | None, json: Any, data: FormTypes | None
) -> bytes | AsyncIterable[bytes] | None:
    values = {"content": content, "json": json, "data": data}
    given = [name for name, value in values.items() if value is not None]
    if len(given) > 1:
        raise InvalidRequest(f"pass one of content, json and data, not {' and '.join(given)}")
    if data is not None:
        return encode_form(data)
    if json is not None:
        try:
            return jsonlib.dumps(json, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"json body is not serialisable: {exc}") from exc
    if content is None:
        return None
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if isinstance(content, AsyncIterable):
        return content
    raise InvalidRequest(
        f"content must be bytes, str or an async iterable of bytes, got {type(content).__name__}"
    )
