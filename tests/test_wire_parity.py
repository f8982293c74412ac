"""Both parsers read the same bytes the same way: h11 and httptools (llhttp) wires, fed one
answer in the same pieces, give the same events, or both refuse it. No sockets."""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass

import h11
import pytest
from answer_strategies import http_answers
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_agent._connection import MAX_RESPONSE_HEAD_SIZE
from starlette_agent._wire import END, NEED_DATA, H11Wire, Head, Wire, WireError
from starlette_agent._wire_httptools import HttptoolsWire

STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 103 Early Hints",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 999 Odd",
    b"HTTP/1.1 200",
    b"HTTP/2 200",
    b"HTTP/1.2 200 OK",
    b"http/1.1 200 ok",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1  200 OK",
    b"",
]
HEADER_LINES = [
    b"Content-Length: 5",
    b"Content-Length: 0",
    b"Content-Length: 2",
    b"Content-Length: -1",
    b"Content-Length: x",
    b"Content-Length: 5, 5",
    b"Content-Length: +5",
    b"Content-Length:5",
    b"Content-Length: 5 ",
    b"content-length: 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: Chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: identity",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Keep-Alive: timeout=5",
    b"X: a\x00b",
    b"X: a\x01b",
    b"X: tab\there",
    b"X: caf\xc3\xa9",
    b"X:",
    b"X : spaced",
    b"No colon",
    b" folded",
    b"\tfolded",
    b"X-Long: " + b"a" * 300,
]
BODIES = [
    b"",
    b"hello",
    b"ok",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;ext=1\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"zz\r\n",
    b"0\r\n\r\n",
    b"5\r\nhel",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]


NEXT_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"


answers = http_answers(STATUS_LINES, HEADER_LINES, BODIES)


@dataclass(frozen=True)
class Outcome:
    """What a wire made of an answer: the heads and body it gave, how it ended."""

    heads: tuple[tuple[int, bytes], ...]
    body: bytes
    ended: str  # "end", "need-data", or "refused"
    reusable: bool
    then: Outcome | None = None  # after a reusable end: how the next response was read


def read(wire: Wire, pieces: list[bytes], *, eof: bool) -> Outcome:
    heads: list[tuple[int, bytes]] = []
    body = b""
    fed = [*pieces, b""] if eof else list(pieces)
    for piece in fed:
        try:
            wire.receive_data(piece)
            while True:
                event = wire.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Head):
                    heads.append((event.status, event.http_version))
                elif event is END:
                    return Outcome(tuple(heads), body, "end", wire.finish())
                else:
                    assert isinstance(event, bytes)
                    body += event
        except WireError:
            return Outcome(tuple(heads), body, "refused", False)
    return Outcome(tuple(heads), body, "need-data", False)


def request_head(method: bytes) -> h11.Request:
    return h11.Request(method=method, target=b"/", headers=[(b"host", b"example")])


def both(answer: bytes, cuts: list[int], *, method: bytes, eof: bool) -> tuple[Outcome, Outcome]:
    points = sorted({0, *(cut % (len(answer) + 1) for cut in cuts), len(answer)})
    pieces = [answer[a:b] for a, b in itertools.pairwise(points) if b > a]
    outcomes = []
    for wire_class in (H11Wire, HttptoolsWire):
        wire = wire_class(MAX_RESPONSE_HEAD_SIZE)
        wire.request(request_head(method), None)
        outcome = read(wire, pieces, eof=eof)
        if outcome.reusable:
            # The connection carries on: the next exchange must be read as on a new one.
            wire.request(request_head(b"GET"), None)
            then = read(wire, [NEXT_ANSWER[:20], NEXT_ANSWER[20:]], eof=False)
            outcome = dataclasses.replace(outcome, then=then)
        outcomes.append(outcome)
    return outcomes[0], outcomes[1]


def comparable(outcome: Outcome) -> object:
    # A refusal is a refusal, whatever was read before it.
    return "refused" if outcome.ended == "refused" else outcome


@settings(max_examples=int(os.environ.get("PARITY_EXAMPLES", "3000")), deadline=None)
@given(
    answer=answers,
    cuts=st.lists(st.integers(0, 400), max_size=4),
    method=st.sampled_from([b"GET", b"GET", b"HEAD"]),
    eof=st.booleans(),
)
def test_both_parsers_read_an_answer_alike(
    answer: bytes, cuts: list[int], method: bytes, eof: bool
) -> None:
    by_h11, by_llhttp = both(answer, cuts, method=method, eof=eof)
    assert comparable(by_h11) == comparable(by_llhttp), (answer, by_h11, by_llhttp)
    if by_h11.then is not None:
        assert (by_h11.then.body, by_h11.then.ended) == (b"next", "end")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "end"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "refused"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "refused"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "refused"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "refused"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nok", "refused"),
    ],
)
def test_known_answers(answer: bytes, expected: str) -> None:
    by_h11, by_llhttp = both(answer, [], method=b"GET", eof=True)
    assert by_h11.ended == by_llhttp.ended == expected
