"""Arbitrary server answers for the parser parity tests: a status line, some header lines, one
line ending throughout (sometimes a bare LF), an interim ``100 Continue`` now and then, and a
body; or, one time in ten, noise."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


def http_answers(
    status_lines: Sequence[bytes],
    header_lines: Sequence[bytes],
    bodies: Sequence[bytes],
    *,
    any_body: bool = False,
) -> st.SearchStrategy[bytes]:
    """Answers built from the given pieces; ``any_body`` also draws arbitrary body bytes."""
    body = st.sampled_from(bodies)
    if any_body:
        body = st.one_of(body, st.binary(max_size=32))

    @st.composite
    def answers(draw: st.DrawFn) -> bytes:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.binary(max_size=120))  # noise
        lines = [draw(st.sampled_from(status_lines))]
        lines += draw(st.lists(st.sampled_from(header_lines), max_size=4))
        ending = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
        head = ending.join(lines) + ending + ending
        interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.integers(0, 5)) == 0 else b""
        return interim + head + draw(body)

    return answers()
