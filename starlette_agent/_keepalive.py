"""Reading the server's ``Keep-Alive: timeout=N`` hint.

A server that says how long it keeps an idle socket open will close it at about that time; a
request sent on it just then races the close. So the agent stops reusing the socket a little
before (``keep_alive_timeout_buffer``), as undici does.
"""

from __future__ import annotations

import math


def keep_alive_seconds(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The ``timeout`` of the response's Keep-Alive header, or None when it gives none.

    Accepts ``timeout=5``, ``max=100, timeout=5`` and quoted values; ignores values that are
    not finite non-negative numbers, since a malformed hint is no reason to drop a socket.
    """
    for name, value in headers:
        if name != b"keep-alive":
            continue
        for parameter in value.split(b","):
            key, _, raw = parameter.partition(b"=")
            if key.strip().lower() != b"timeout":
                continue
            try:
                seconds = float(raw.strip().strip(b'"'))
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None
