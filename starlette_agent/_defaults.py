"""What an agent adds to each request it builds: its base URL, default headers, User-Agent and
Accept-Encoding.

``Request(...)`` is exactly what it is given (plus ``Host``, credentials and framing);
``agent.build_request(...)`` is that request made the agent's way, here. The request's own
arguments always win over the agent's defaults.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, TypeAlias, cast

from ._arguments import RequestParts, check_arguments
from ._decoding import ACCEPT_ENCODING
from ._request import Request, copied, validate_headers
from ._urls import join_url, parse_url
from ._version import __version__

if TYPE_CHECKING:
    from ._options import AgentOptions

__all__ = ["USER_AGENT", "BuiltRequests", "build_request"]

DefaultPairs: TypeAlias = tuple[tuple[str, str], ...]

#: Sent unless the request or the agent's default headers set a ``User-Agent``.
USER_AGENT = f"starlette-agent/{__version__}"


def build_request(config: AgentOptions, method: str, url: str, parts: RequestParts) -> Request:
    """A ``Request`` for ``url`` (resolved against ``config.base_url``) with ``parts``, under
    the agent's default headers."""
    check_arguments(parts, sending=False)
    if config.base_url is not None and isinstance(url, str):
        url = join_url(config.base_url, url)
    defaults = _defaults(cast(DefaultPairs, config.headers), config.decompress)
    own = validate_headers(parts.get("headers"))
    skip = {name.lower() for name, _ in own}
    # A default Authorization yields to the request's own credentials, in any form.
    if (
        b"authorization" not in skip
        and any(lowered == b"authorization" for lowered, _ in defaults)
        and (parts.get("auth") is not None or parse_url(url).authorization is not None)
    ):
        skip.add(b"authorization")
    merged: RequestParts = {**parts, "headers": [p for n, p in defaults if n not in skip] + own}
    return Request(method, url, **merged)


class BuiltRequests:
    """The requests an agent built from a method and a URL alone (``agent.get(url)``), each
    built and validated once: a service sends the same few again and again.

    Each call returns a new ``Request`` (a value the caller may keep or change), equal to what
    ``build_request`` makes, since that depends on nothing but the configuration, the method
    and the URL. At most ``SIZE`` are kept; then the cache starts again.
    """

    SIZE = 256

    __slots__ = ("_built", "config")

    def __init__(self, config: AgentOptions) -> None:
        self.config = config
        self._built: dict[tuple[str, str], Request] = {}

    def build(self, method: str, url: str) -> Request:
        """``build_request(self.config, method, url, {})``, from the cache when it can be."""
        if type(method) is not str or type(url) is not str:  # refused (or unhashable)
            return build_request(self.config, method, url, {})
        built = self._built.get((method, url))
        if built is None:
            built = build_request(self.config, method, url, {})
            if len(self._built) >= self.SIZE:
                self._built.clear()
            self._built[method, url] = built
        return copied(built)


@lru_cache(maxsize=64)
def _defaults(
    headers: DefaultPairs, decompress: bool
) -> tuple[tuple[bytes, tuple[bytes, bytes]], ...]:
    """The agent's headers for every request, each with its lower-case name: the default
    ``headers``, then ``User-Agent`` and ``Accept-Encoding`` unless those set them."""
    pairs = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    names = {name.lower() for name, _ in pairs}
    if b"user-agent" not in names:
        pairs.append((b"user-agent", USER_AGENT.encode("ascii")))
    if decompress and b"accept-encoding" not in names:
        pairs.append((b"accept-encoding", ACCEPT_ENCODING.encode("ascii")))
    return tuple((name.lower(), (name, value)) for name, value in pairs)
