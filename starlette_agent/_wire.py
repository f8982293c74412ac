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

import re
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
    "check_head",
    "check_raw_head",
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
    """The ``Wire`` on h11: its state machine validates every event it sends or receives.

    h11 accepts some heads llhttp refuses (bare LF line ends, folded lines, control characters,
    a Content-Length given twice or as a list): the raw bytes of each head are kept until it is
    parsed and checked by ``check_raw_head``, so both wires refuse the same answers.
    """

    __slots__ = ("_conn", "_raw", "_scanning")

    def __init__(self, max_head_size: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_size)
        self._raw = b""  # the current response's head bytes, until its final head is parsed
        self._scanning = True

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
        if self._scanning:
            self._raw += data
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
            problem = self._check_raw_head() or check_head(head)
            if problem is not None:
                raise WireError(problem)
            if kind is h11.Response:
                self._scanning = False  # the final head: what follows is body
                self._raw = b""
            return head
        if kind is h11.EndOfMessage:
            return END
        if event is h11.NEED_DATA:
            return NEED_DATA
        if kind is h11.ConnectionClosed:
            raise WireError("the server closed the connection")
        raise WireError(f"unexpected {event!r}")  # h11.PAUSED: a protocol switch nobody asked

    def _check_raw_head(self) -> str | None:
        """Check the bytes of the head h11 just parsed, and keep those that follow it."""
        raw = self._raw
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            self._scanning = False
            return "a line of the response head does not end in CRLF"
        self._raw = raw[end + 4 :]
        return check_raw_head(raw[: end + 2])

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
            self._raw = b""
            self._scanning = True
            return True
        return False


# Control characters other than tab, and any CR or LF left once line ends are taken out.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")


def check_raw_head(raw: bytes) -> str | None:
    """What is wrong with a response head's bytes (its lines, each ending in CRLF), or None.

    The rules llhttp applies and h11 does not: strict line ends, no folded lines, no control
    characters, one plain Content-Length."""
    if raw.count(b"\n") != raw.count(b"\r\n"):
        return "a line of the response head does not end in CRLF"
    if b"\r\n " in raw or b"\r\n\t" in raw:
        return "the response head folds a header over two lines (obsolete line folding)"
    if _CONTROL.search(raw.replace(b"\r\n", b"")):
        return "the response head contains a control character"
    lowered = raw.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start >= 0:
        if lowered.find(b"\r\ncontent-length:", start + 1) >= 0:
            return "the response has more than one Content-Length"
        value = raw[start + 17 : raw.find(b"\r\n", start + 2)].strip(b" \t")
        if not _DIGITS.fullmatch(value):
            return f"the response's Content-Length {value!r} is not a number"
    return None


def check_head(head: Head) -> str | None:
    """What is wrong with a parsed response head, whichever parser read it, or None.

    Both framings at once is refused (RFC 9112 6.1: it "ought to be handled as an error"; a
    sign of smuggling), and only ``chunked`` is a transfer coding anyone may frame a body with.
    """
    encodings = [value for name, value in head.headers if name == b"transfer-encoding"]
    if encodings and head.status >= 200:
        if any(name == b"content-length" for name, _ in head.headers):
            return "the response has both Transfer-Encoding and Content-Length"
        if len(encodings) > 1 or encodings[0].strip().lower() != b"chunked":
            return "only Transfer-Encoding: chunked is supported"
    return None
