"""The ``Wire`` on httptools: llhttp, Node's own HTTP parser, in C.

Requests are written from a serialisation of the h11 head that ``prepare_request`` validated
(cached per head); bodies are framed here (Content-Length or chunked). Responses are parsed by
``httptools.HttpResponseParser``, whose callbacks queue the same events ``H11Wire`` gives.

llhttp is strict where h11 is lenient (see ``_wire.check_head``), and lenient in a few places
where h11 is strict; those are checked here, so both wires refuse the same responses:

* a ``Transfer-Encoding`` other than ``chunked`` (h11 supports no other);
* an HTTP/1.0 response is never kept alive (h11 does not do HTTP/1.0 keep-alive);
* a head larger than the limit (llhttp has none of its own);
* a response to HEAD ends at its head, whatever its Content-Length says (llhttp is not told the
  request method, so the head is cut out of the stream before it is fed);
* a close-delimited body ends at EOF (llhttp waits for a call that httptools does not offer).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import h11
import httptools

from ._wire import END, NEED_DATA, BodyLengthError, Head, WireError, WireEvent, check_head

__all__ = ["HttptoolsWire"]

# Request send states.
_IDLE, _BODY, _SENT = 0, 1, 2
# How a final (not 1xx) response's status line starts.
_FINAL_STATUS_STARTS = tuple(
    b"HTTP/1.%d %d" % (minor, digit) for minor in (0, 1) for digit in range(2, 10)
)


class _Stop(Exception):
    """Raised in a callback to stop llhttp: the response is over, or already refused."""


class HttptoolsWire:
    """One connection's HTTP/1.1 framing on llhttp."""

    __slots__ = (
        "_body_left",
        "_chunked",
        "_close_delimited",
        "_done",
        "_events",
        "_final_head",
        "_head_bytes",
        "_head_done",
        "_head_only",
        "_head_start",
        "_head_tail",
        "_headers",
        "_interim",
        "_keep_alive",
        "_max_head_size",
        "_message_start",
        "_parser",
        "_parser_stopped",
        "_reason",
        "_request_close",
        "_send_state",
        "_trailing",
    )

    _body_left: int
    _chunked: bool
    _close_delimited: bool
    _done: bool
    _final_head: bool
    _head_bytes: int
    _head_done: bool
    _head_only: bool
    _head_start: bytes
    _head_tail: bytes
    _headers: list[tuple[bytes, bytes]]
    _interim: bool
    _keep_alive: bool
    _message_start: bool
    _parser_stopped: bool
    _reason: bytes
    _request_close: bool
    _send_state: int
    _trailing: bool

    def __init__(self, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._events: deque[WireEvent | WireError] = deque()
        self._send_state = _IDLE
        self._chunked = False
        self._body_left = 0
        self._head_only = False  # the request was HEAD: its response has no body
        self._request_close = False
        self._parser: Any = None
        self._parser_stopped = True  # no parser yet, or one that a callback stopped
        self._begin_cycle()

    # -- sending -------------------------------------------------------------------------------

    def request(self, head: h11.Request, body: bytes | None) -> bytes:
        data = self._start(head)
        if not self._chunked and len(body or b"") == self._body_left:
            self._send_state = _SENT
            return data + body if body else data  # the common case, framed by Content-Length
        # A head framed otherwise than its body (a replayed stream, for one): frame it as the
        # head says, as h11 would.
        self._send_state = _BODY
        return data + (self.request_body(body) if body else b"") + self.request_end()

    def request_head(self, head: h11.Request) -> bytes:
        data = self._start(head)
        self._send_state = _BODY
        return data

    def request_body(self, data: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        if len(data) > self._body_left:
            raise BodyLengthError("Too much data for declared Content-Length")
        self._body_left -= len(data)
        return data

    def request_end(self) -> bytes:
        self._send_state = _SENT
        if self._chunked:
            return b"0\r\n\r\n"
        if self._body_left:
            raise BodyLengthError("Too little data for declared Content-Length")
        return b""

    def _start(self, head: h11.Request) -> bytes:
        data, chunked, length, close = _serialised(head)
        self._chunked = chunked
        self._body_left = length
        self._head_only = head.method == b"HEAD"
        self._request_close = close
        return data

    # -- receiving -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._done:
            if data:
                self._trailing = True  # bytes after the end of the response
            return
        if not data:
            self._end_of_stream()
            return
        if not self._final_head:
            if (
                self._message_start
                and not self._head_start
                and not self._head_only
                and data.startswith(_FINAL_STATUS_STARTS)
                and b"\r\n\r\n" in data
            ):
                # The common case: a final head, whole, at the start of this read. Nothing needs
                # cutting out (no interim head follows it, and no HEAD request's body must be
                # ignored), so head and body are fed in one call.
                self._message_start = False
                self._feed(data)
                return
            data = self._feed_heads(data)
            if self._done:
                self._trailing = self._trailing or bool(data)
                return
        if data:
            self._feed(data)

    def _feed_heads(self, data: bytes) -> bytes:
        """Feed llhttp the heads in ``data`` one at a time, checking where each one starts;
        return what follows the final head (the body's first bytes)."""
        while data and not self._final_head and not self._events_refused():
            if self._message_start:
                # llhttp skips blank lines before a status line, and reads RTSP/ and ICE/ too;
                # h11 refuses all of them, and so do we, at the first byte that shows it.
                start = (self._head_start + data)[:5]
                if start != b"HTTP/"[: len(start)]:
                    self._refuse("the response does not start with HTTP/")
                    return b""
                self._head_start = start
                if len(start) == 5:
                    self._message_start = False
            seen = self._head_tail + data
            end = seen.find(b"\r\n\r\n")
            if end < 0:
                self._head_tail = seen[-3:]
                self._feed(data)
                if not self._head_done and self._head_bytes > self._max_head_size:
                    self._refuse(f"the response head is larger than {self._max_head_size} bytes")
                return b""
            cut = end + 4 - len(self._head_tail)
            self._head_tail = b""
            self._feed(data[:cut])
            data = data[cut:]
        return b"" if self._events_refused() else data

    def next_event(self) -> WireEvent:
        if not self._events:
            return NEED_DATA
        event = self._events.popleft()
        if isinstance(event, WireError):
            self._events.appendleft(event)  # stays refused
            raise event
        return event

    @property
    def buffered(self) -> int:
        return 0  # llhttp takes every byte it is given

    @property
    def settled(self) -> bool:
        return self._send_state != _BODY

    def finish(self) -> bool:
        reusable = (
            self._done
            and self._send_state == _SENT
            and self._keep_alive
            and not self._request_close
            and not self._trailing
            and not self._close_delimited
            and not self._events
        )
        if reusable:
            self._send_state = _IDLE
            self._begin_cycle()
        return reusable

    # -- parsing -------------------------------------------------------------------------------

    def _begin_cycle(self) -> None:
        if self._parser_stopped:  # else the parser ended its last response cleanly: reuse it
            self._parser = httptools.HttpResponseParser(self)
            self._parser_stopped = False
        self._events.clear()
        self._done = False
        self._final_head = False  # the final (non-1xx) head was parsed
        self._trailing = False
        self._head_tail = b""  # the last bytes of a head fed so far, to find where it ends
        self._message_start = True  # the next byte starts a head
        self._head_start = b""  # its first bytes, up to five
        self._begin_message()

    def _begin_message(self) -> None:
        self._head_done = False
        self._head_bytes = 0
        self._headers = []
        self._reason = b""
        self._interim = False
        self._keep_alive = False
        self._close_delimited = False

    def _feed(self, data: bytes) -> None:
        if not self._head_done:
            self._head_bytes += len(data)
        # llhttp refuses every byte after a callback raised or it found an error: the next
        # cycle, if there is one, needs a new parser.
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._parser_stopped = True
            if not isinstance(exc.__context__, _Stop):
                raise
        except httptools.HttpParserUpgrade:
            self._parser_stopped = True
            self._refuse("a protocol switch (101) nobody asked for")
        except httptools.HttpParserError as exc:
            self._parser_stopped = True
            if self._done:
                self._trailing = True  # garbage after a complete response
            else:
                self._refuse(str(exc))

    def _end_of_stream(self) -> None:
        if self._head_done and self._close_delimited and not self._interim:
            self._events.append(END)
            self._done = True
        elif not self._events_refused():
            self._refuse("peer closed connection without sending complete message body")

    def _events_refused(self) -> bool:
        return bool(self._events) and isinstance(self._events[-1], WireError)

    def _refuse(self, detail: str) -> None:
        if not self._events_refused():
            self._events.append(WireError(detail))

    # -- llhttp's callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            self._trailing = True  # a second response nobody asked for
            raise _Stop
        self._begin_message()

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # a trailer: read and dropped, as h11 drops them
        self._headers.append((name.lower(), value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        version = parser.get_http_version().encode("ascii")
        head = Head(status, self._reason, version, self._headers)
        self._head_done = True
        problem = check_head(head)
        if problem is not None:
            self._refuse(problem)
            raise _Stop
        self._events.append(head)
        if status < 200:
            self._interim = True
            return
        self._final_head = True
        # h11 keeps no HTTP/1.0 connection alive; neither do we, whatever it says. (llhttp's
        # should_keep_alive() also weighs the body's framing, which finish() does itself.)
        close = framed = False
        for name, value in self._headers:
            if name == b"connection":
                close = close or b"close" in value.lower()
            elif name == b"content-length" or name == b"transfer-encoding":
                framed = True
        self._keep_alive = version == b"1.1" and not close
        if self._head_only:
            self._events.append(END)
            self._done = True
            raise _Stop
        self._close_delimited = status not in (204, 304) and not framed

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._begin_message()  # an interim response: the final one follows
            self._message_start = True
            self._head_start = b""
            return
        self._events.append(END)
        self._done = True


_HEAD_CACHE_SIZE = 256
_serialised_heads: dict[int, tuple[h11.Request, tuple[bytes, bool, int, bool]]] = {}


def _serialised(head: h11.Request) -> tuple[bytes, bool, int, bool]:
    """``head`` as bytes, with its framing: (bytes, chunked, Content-Length, Connection: close).

    Cached per head object: ``prepare_request`` builds each distinct head once, and validated it
    then, so what is written here has passed h11's checks."""
    cached = _serialised_heads.get(id(head))
    if cached is not None and cached[0] is head:
        return cached[1]
    lines = [b"%b %b HTTP/1.1\r\n" % (head.method, head.target)]
    chunked = False
    length = 0
    close = False
    for name, value in head.headers.raw_items():
        lines.append(b"%b: %b\r\n" % (name, value))
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            chunked = True
        elif lowered == b"content-length":
            length = int(value)
        elif lowered == b"connection" and b"close" in value.lower():
            close = True
    lines.append(b"\r\n")
    result = (b"".join(lines), chunked, length, close)
    if len(_serialised_heads) >= _HEAD_CACHE_SIZE:
        _serialised_heads.clear()
    _serialised_heads[id(head)] = (head, result)  # keeping head keeps its id unique
    return result
