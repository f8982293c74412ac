"""HTTP/1.1 on the wire for one client connection: request bytes out, response events in.

``Connection`` speaks to a ``Wire`` and never to a parser directly, so the parser is a choice:
``H11Wire`` (h11, pure Python, the reference) or ``HttptoolsWire`` (llhttp, Node's own parser, in
C; ``_wire_httptools``). Both give the same events for the same bytes and refuse the same
malformed input, which ``tests/test_agent_fuzz.py`` checks by sending both the same answers.

Events: a ``Head`` (a 1xx interim head or the final one), ``bytes`` of body, ``END`` of the
response, or ``NEED_DATA``. A malformed response raises ``WireError``; a request body that breaks
its own declared length raises ``BodyLengthError``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import h11

__all__ = [
    "END",
    "NEED_DATA",
    "BodyLengthError",
    "H11Wire",
    "Head",
    "Wire",
    "WireError",
    "WireEvent",
]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The response is complete.
END: Final = _Marker("END")
#: More bytes are needed before the next event.
NEED_DATA: Final = _Marker("NEED_DATA")


class Head:
    """A response head: ``status`` below 200 for an interim (1xx) one. Header names are lower
    case; values as sent, without surrounding whitespace."""

    __slots__ = ("headers", "http_version", "reason", "status")

    def __init__(
        self, status: int, reason: bytes, http_version: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Head {self.status} HTTP/{self.http_version.decode()}>"


WireEvent = Head | bytes | _Marker


class WireError(Exception):
    """The response broke HTTP/1.1; the message says how."""


class BodyLengthError(Exception):
    """A streamed request body yielded more or fewer bytes than its Content-Length."""


class Wire(Protocol):
    """One connection's HTTP/1.1 framing, one request and response at a time."""

    def request(self, head: h11.Request, body: bytes | None) -> bytes:
        """A whole request (head, body, end) as bytes to send."""

    def request_head(self, head: h11.Request) -> bytes:
        """The head of a request whose body follows in ``request_body`` calls."""

    def request_body(self, data: bytes) -> bytes:
        """A piece of the body, framed (a chunk, under chunked encoding)."""

    def request_end(self) -> bytes:
        """The end of the body (the last chunk, under chunked encoding)."""

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the socket; ``b""`` when the server closed it."""

    def next_event(self) -> WireEvent:
        """The next response event, or ``NEED_DATA``."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed into an event."""

    @property
    def settled(self) -> bool:
        """True when no request is half-sent: a polite close is safe."""

    def finish(self) -> bool:
        """After ``END``: start the next cycle and return True if the connection can carry
        another request (both sides done, keep-alive, nothing received past the response)."""


_SETTLED = frozenset({h11.IDLE, h11.DONE, h11.MUST_CLOSE, h11.CLOSED})


class H11Wire:
    """The ``Wire`` on h11: its state machine validates every event it sends or receives."""

    __slots__ = ("_conn",)

    def __init__(self, max_head_size: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_size)

    def request(self, head: h11.Request, body: bytes | None) -> bytes:
        conn = self._conn
        data = conn.send(head) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        return data + (conn.send(h11.EndOfMessage()) or b"")

    def request_head(self, head: h11.Request) -> bytes:
        return self._conn.send(head) or b""

    def request_body(self, data: bytes) -> bytes:
        try:
            return self._conn.send(h11.Data(data=data)) or b""
        except h11.LocalProtocolError as exc:
            raise BodyLengthError(str(exc)) from exc

    def request_end(self) -> bytes:
        try:
            return self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise BodyLengthError(str(exc)) from exc

    def receive_data(self, data: bytes) -> None:
        self._conn.receive_data(data)

    def next_event(self) -> WireEvent:
        try:
            event: Any = self._conn.next_event()  # type() checks below: faster than isinstance
        except h11.RemoteProtocolError as exc:
            raise WireError(str(exc)) from exc
        kind = type(event)
        if kind is h11.Data:
            return bytes(event.data)
        if kind is h11.Response or kind is h11.InformationalResponse:
            head = Head(event.status_code, event.reason, event.http_version, list(event.headers))
            if kind is h11.Response:
                _check_framing(head)
            return head
        if kind is h11.EndOfMessage:
            return END
        if event is h11.NEED_DATA:
            return NEED_DATA
        if kind is h11.ConnectionClosed:
            raise WireError("the server closed the connection")
        raise WireError(f"unexpected {event!r}")  # h11.PAUSED: a protocol switch nobody asked

    @property
    def buffered(self) -> int:
        return len(self._conn.trailing_data[0])

    @property
    def settled(self) -> bool:
        return self._conn.our_state in _SETTLED

    def finish(self) -> bool:
        conn = self._conn
        if conn.trailing_data[0]:
            return False  # bytes after the response would be read as the next response
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


def _check_framing(head: Head) -> None:
    """Refuse a response framed two ways (RFC 9112 6.1: "ought to be handled as an error"; a
    sign of smuggling). llhttp refuses it too, so both wires answer alike."""
    if head.status >= 200 and head.status not in (204, 304):
        names = [name for name, _ in head.headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise WireError("the response has both Transfer-Encoding and Content-Length")
