"""Query parameters read strictly: a value the handler would have to change is refused instead.

A burst of 5000 calls is not quietly cut to 1000, nor a delay of -1 s turned into 0: the answer
is a 422 naming every parameter that was wrong and why, and nothing is sent upstream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass(frozen=True)
class Bounded:
    """A number from ``low`` to ``high`` (both included); ``integer`` for a count."""

    low: float
    high: float
    default: float
    integer: bool = False

    def expects(self) -> str:
        if self.integer:
            return f"an integer from {self.low:g} to {self.high:g}"
        return f"a number of seconds from {self.low:g} to {self.high:g}"

    def parse(self, text: str) -> float | None:
        """The value ``text`` means, or None when it is not one this parameter takes."""
        if self.integer:
            value = float(text) if text.isascii() and text.isdecimal() else math.nan
        else:
            try:
                value = float(text)
            except ValueError:
                return None
        return value if self.low <= value <= self.high else None  # NaN fails both


#: How long the upstream waits before answering a call: ``/work?delay=``, which server1's and
#: server2's ``/call`` and ``/burst`` pass on.
DELAY = Bounded(0.0, 5.0, default=0.0)


class BadParameters(Exception):
    """Query parameters a handler refused: parameter name -> what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{name} {problem}" for name, problem in self.problems.items()))


async def bad_parameters(request: Request, exc: Exception) -> Response:
    """The app's answer to ``BadParameters``: 422, with the message and each parameter's."""
    assert isinstance(exc, BadParameters)
    return JSONResponse(
        {"error": f"invalid query parameters: {exc}", "parameters": exc.problems},
        status_code=422,
    )


def read_query(request: Request, expected: Mapping[str, Bounded]) -> dict[str, float]:
    """The ``expected`` parameters of ``request``, defaults filled in, or ``BadParameters``."""
    query = request.query_params
    problems: dict[str, str] = {}
    values: dict[str, float] = {}
    for name in dict.fromkeys(query.keys()):
        if name not in expected:
            problems[name] = f"is not a parameter here; known: {', '.join(expected)}"
    for name, bounds in expected.items():
        given = query.getlist(name)
        if not given:
            values[name] = bounds.default
            continue
        if len(given) > 1:
            problems[name] = "is given more than once"
            continue
        value = bounds.parse(given[0])
        if value is None:
            problems[name] = f"must be {bounds.expects()}, got {given[0]!r}"
        else:
            values[name] = value
    if problems:
        raise BadParameters(problems)
    return values
