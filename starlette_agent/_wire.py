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

    __slots__ = ("_conn", "_eof", "_max_head", "_raw", "_scanning")

    def __init__(self, max_head_size: int) -> None:
        self._max_head = max_head_size
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_size)
        self._raw = b""  # the current response's head bytes, until its final head is parsed
        self._scanning = True
        self._eof = False

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
        if not data:
            self._eof = True
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
            # h11 judges a line once it has ended; llhttp refuses at the first wrong byte. A
            # server that sends a bad partial line and then nothing must get the same answer
            # from both, so what h11 holds is checked now.
            if self._scanning:
                # Nothing received yet (waiting for the head) is nothing to check.
                problem = check_partial_head(self._raw) if self._raw else None
            else:
                problem = self._partial_chunk()
            if problem is not None:
                raise WireError(problem)
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

    def _partial_chunk(self) -> str | None:
        """What is wrong with a chunk header h11 holds unfinished, if that is where it is."""
        reader: Any = getattr(self._conn, "_reader", None)
        if type(reader).__name__ != "ChunkedReader":
            return None
        # Only between chunks: no chunk data left, not in the trailer, no CRLF to skip.
        in_chunk: int = getattr(reader, "_bytes_in_chunk", 1)
        in_trailer: bool = getattr(reader, "_reading_trailer", True)
        to_discard: bytes = getattr(reader, "_bytes_to_discard", b"x")
        if in_chunk or in_trailer or to_discard:
            return None
        pending = self._conn.trailing_data[0]
        if _PARTIAL_CHUNK_HEADER.fullmatch(pending):
            return None
        return f"illegal chunk header: {pending[:40]!r}"

    @property
    def buffered(self) -> int:
        return len(self._conn.trailing_data[0])

    @property
    def settled(self) -> bool:
        return self._conn.our_state in _SETTLED

    def finish(self) -> bool:
        conn = self._conn
        if self._eof or not (conn.our_state is h11.DONE and conn.their_state is h11.DONE):
            return False
        extra = conn.trailing_data[0]
        if extra.strip(b"\r\n"):
            return False  # bytes after the response would be read as the next response
        if extra:
            # Blank lines after a response are harmless (llhttp skips them); h11 would refuse
            # them as the start of the next response, so that one starts afresh.
            self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head)
        else:
            conn.start_next_cycle()
        self._raw = b""
        self._scanning = True
        return True


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


# What may come so far of a head still arriving (each pattern matches every prefix of a valid
# line): the status line, a header line, and the chunk header of a chunked body.
_PARTIAL_STATUS = re.compile(
    rb"(?:H(?:T(?:T(?:P(?:/(?:\d(?:\.(?:\d(?: (?:\d(?:\d(?:\d"
    rb"(?: [^\r\n]*)?)?)?)?)?)?)?)?)?)?)?)?\r?)?"
)
_STATUS_LINE = re.compile(rb"HTTP/\d\.\d \d\d\d(?: [^\r\n]*)?")
_TOKEN_CHARS = rb"-!#$%&'*+.^_`|~0-9a-zA-Z"
_PARTIAL_HEADER = re.compile(rb"[" + _TOKEN_CHARS + rb"]*(?::[^\r\n]*)?\r?")
_HEADER_LINE = re.compile(rb"[" + _TOKEN_CHARS + rb"]+:[^\r\n]*")
_PARTIAL_CHUNK_HEADER = re.compile(rb"[0-9A-Fa-f]{0,20}|[0-9A-Fa-f]{1,20}(?:;[^\r\n]*)?[ \t]*\r?")


def check_partial_head(raw: bytes) -> str | None:
    """What is wrong so far with a head that has not ended yet, or None if it may still turn
    out well (``check_raw_head`` judges it once it has ended)."""
    if b"\r\n\r\n" in raw:
        return None
    if _CONTROL.search(raw.replace(b"\r\n", b"").removesuffix(b"\r")):
        return "the response head contains a control character or a bare CR or LF"
    status, *headers = raw.split(b"\r\n")
    if not headers:
        return (
            None
            if _PARTIAL_STATUS.fullmatch(status)
            else "the response does not start with a status line"
        )
    if not _STATUS_LINE.fullmatch(status):
        return f"malformed status line {status[:60]!r}"
    *complete, last = headers
    for line in complete:
        if not _HEADER_LINE.fullmatch(line):
            return f"malformed header line {line[:60]!r}"
    if not _PARTIAL_HEADER.fullmatch(last):
        return f"malformed header line {last[:60]!r}"
    return None


def check_head(head: Head) -> str | None:
    """What is wrong with a parsed response head, whichever parser read it, or None.

    Both framings at once is refused (RFC 9112 6.1: it "ought to be handled as an error"; a
    sign of smuggling), and only ``chunked`` is a transfer coding anyone may frame a body with.
    """
    if head.http_version not in (b"1.1", b"1.0"):
        return f"HTTP/{head.http_version.decode('latin-1')} is not HTTP/1.1 or HTTP/1.0"
    if head.status < 200 and any(
        name == b"connection" and b"close" in value.lower() for name, value in head.headers
    ):
        return "an interim (1xx) response says Connection: close, yet a final response must follow"
    encodings = [value for name, value in head.headers if name == b"transfer-encoding"]
    if encodings:
        if any(name == b"content-length" for name, _ in head.headers):
            return "the response has both Transfer-Encoding and Content-Length"
        if len(encodings) > 1 or encodings[0].strip().lower() != b"chunked":
            return "only Transfer-Encoding: chunked is supported"
    return None
