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
        "_head_bytes",
        "_head_done",
        "_head_only",
        "_headers",
        "_interim",
        "_keep_alive",
        "_max_head_size",
        "_parser",
        "_pending_head",
        "_reason",
        "_request_close",
        "_send_state",
        "_trailing",
    )

    def __init__(self, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._events: deque[WireEvent | WireError] = deque()
        self._send_state = _IDLE
        self._chunked = False
        self._body_left = 0
        self._head_only = False  # the request was HEAD: its response has no body
        self._request_close = False
        self._parser: Any = None
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
        if self._head_only and not self._head_done:
            self._feed_head_only(data)
        else:
            self._feed(data)
        if not self._head_done and self._head_bytes > self._max_head_size:
            self._refuse(f"the response head is larger than {self._max_head_size} bytes")

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
        return len(self._pending_head)

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
        self._parser = httptools.HttpResponseParser(self)
        self._events.clear()
        self._done = False
        self._trailing = False
        self._pending_head = b""
        self._begin_message()

    def _begin_message(self) -> None:
        self._head_done = False
        self._head_bytes = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._interim = False
        self._keep_alive = False
        self._close_delimited = False

    def _feed(self, data: bytes) -> None:
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
        except httptools.HttpParserUpgrade:
            self._refuse("a protocol switch (101) nobody asked for")
        except httptools.HttpParserError as exc:
            if self._done:
                self._trailing = True  # garbage after a complete response
            else:
                self._refuse(str(exc))

    def _feed_head_only(self, data: bytes) -> None:
        """A response to HEAD: feed llhttp one head at a time, and end at the final one."""
        self._pending_head += data
        while not self._done and not self._events_refused():
            end = self._pending_head.find(b"\r\n\r\n")
            if end < 0:
                self._head_bytes = len(self._pending_head)
                return
            head, self._pending_head = (
                self._pending_head[: end + 4],
                self._pending_head[end + 4 :],
            )
            self._feed(head)
        if self._done and self._pending_head:
            self._trailing = True

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
        # h11 keeps no HTTP/1.0 connection alive; neither do we, whatever it says.
        self._keep_alive = version == b"1.1" and parser.should_keep_alive()
        if self._head_only:
            self._events.append(END)
            self._done = True
            raise _Stop
        names = [name for name, _ in self._headers]
        self._close_delimited = (
            status not in (204, 304)
            and b"content-length" not in names
            and b"transfer-encoding" not in names
        )

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._begin_message()  # an interim response: the final one follows
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
