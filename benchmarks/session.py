"""What the harness asks of every client: fetch a URL, say how long the body was, close."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class Unavailable(Exception):
    """This client cannot run here (a missing package, an option this version lacks)."""


class BadResponse(Exception):
    """A client got something other than the 200 the upstream always sends."""


@dataclass(frozen=True)
class Session:
    """One client instance: ``get(url)`` reads the whole response of a GET and returns the
    length of its body (raising ``BadResponse`` on a status other than 200); ``close()``
    releases everything it holds."""

    get: Callable[[str], Awaitable[int]]
    close: Callable[[], Awaitable[None]]
