"""What an agent adds to each request it builds: its base URL, default headers, User-Agent and
Accept-Encoding.

``Request(...)`` is exactly what it is given (plus ``Host``, credentials and framing);
``agent.build_request(...)`` is that request made the agent's way, here. The request's own
arguments always win over the agent's defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

from ._arguments import RequestParts, check_arguments
from ._decoding import ACCEPT_ENCODING
from ._request import Request, validate_headers
from ._urls import join_url, parse_url
from ._version import __version__

if TYPE_CHECKING:
    from ._options import AgentOptions

__all__ = ["USER_AGENT", "build_request"]

DefaultPairs: TypeAlias = tuple[tuple[str, str], ...]

#: Sent unless the request or the agent's default headers set a ``User-Agent``.
USER_AGENT = f"starlette-agent/{__version__}"


def build_request(config: AgentOptions, method: str, url: str, parts: RequestParts) -> Request:
    """A ``Request`` for ``url`` (resolved against ``config.base_url``) with ``parts``, under
    the agent's default headers."""
    check_arguments(parts, sending=False)
    if config.base_url is not None and isinstance(url, str):
        url = join_url(config.base_url, url)
    own = validate_headers(parts.get("headers"))
    own_names = {name.lower() for name, _ in own}
    # The default Authorization yields to the request's own credentials, in any form.
    own_credentials = parts.get("auth") is not None or parse_url(url).authorization is not None
    defaults: list[tuple[bytes, bytes]] = []
    for name, value in cast(DefaultPairs, config.headers):  # normalised by AgentOptions
        lowered = name.lower().encode("latin-1")
        if lowered in own_names or (lowered == b"authorization" and own_credentials):
            continue
        defaults.append((name.encode("latin-1"), value.encode("latin-1")))
    names = own_names | {name.lower() for name, _ in defaults}
    if b"user-agent" not in names:
        defaults.append((b"user-agent", USER_AGENT.encode("ascii")))
    if config.decompress and b"accept-encoding" not in names:
        defaults.append((b"accept-encoding", ACCEPT_ENCODING.encode("ascii")))
    merged: RequestParts = {**parts, "headers": defaults + own}
    return Request(method, url, **merged)
