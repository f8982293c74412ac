"""The errors an Agent raises.

Every error a caller can see is an ``AgentError``. Low-level exceptions (``OSError``,
``anyio.BrokenResourceError``, ``h11.RemoteProtocolError``...) are translated at the boundary
and kept as ``__cause__``, so a handler can catch one family of errors and still debug the root.
Errors about a particular server carry its ``origin`` (``"http://host:port"``) and name it in the
message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._request import Request
    from ._response import Response

__all__ = [
    "AgentClosed",
    "AgentError",
    "AgentTimeout",
    "BlockedAddress",
    "ConnectError",
    "ConnectTimeout",
    "DecodingError",
    "HTTPStatusError",
    "InvalidOption",
    "InvalidOptionType",
    "InvalidRequest",
    "PoolTimeout",
    "ProxyError",
    "ReadTimeout",
    "RedirectError",
    "RemoteProtocolError",
    "RequestBodyError",
    "ResponseTooLarge",
    "StreamClosed",
    "TooManyRedirects",
    "WriteTimeout",
]


class AgentError(Exception):
    """Base class of every error raised by starlette-agent."""

    def __init__(self, message: str, *, origin: str | None = None) -> None:
        super().__init__(message)
        self.origin = origin


class InvalidOption(AgentError, ValueError):
    """A configuration value is not acceptable: an Agent option, a middleware or registry
    setting, a test double's argument. Raised when the object is created, naming the option.

    ``option`` is the agent option at fault (as it was spelt), when there is one.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class InvalidOptionType(InvalidOption, TypeError):
    """A configuration value has the wrong type (also a ``TypeError``)."""


class InvalidRequest(AgentError, ValueError):
    """The request could not be sent as given: bad URL, scheme, method, header or body.

    Raised before any connection is opened.
    """


class RequestBodyError(AgentError):
    """The request body did not match its declared length.

    A streamed body sent with a caller's ``Content-Length`` yielded more or fewer bytes than
    that header promised. The socket carried part of a request the server cannot frame, so it is
    closed, never reused.
    """


class BlockedAddress(AgentError):
    """The host resolved only to addresses the agent may not connect to.

    Raised when ``block_private_networks`` is on and every address of ``host`` is loopback,
    private, link-local or otherwise special (see ``allowed_networks`` to let a range through).
    Nothing is sent. ``host`` is the URL's host; ``address`` the first address refused.
    """

    def __init__(self, message: str, *, host: str, address: str, origin: str | None = None) -> None:
        super().__init__(message, origin=origin)
        self.host = host
        self.address = address


class AgentClosed(AgentError, RuntimeError):
    """The agent was closed; it takes no more requests (nor a new app to serve)."""


class ConnectError(AgentError):
    """A connection to the origin could not be opened."""


class AgentTimeout(AgentError):
    """Base class of the timeouts."""


class ConnectTimeout(AgentTimeout, ConnectError):
    """Opening the connection (TCP and TLS handshake) took longer than ``connect_timeout``."""


class ReadTimeout(AgentTimeout):
    """The server sent nothing for ``read_timeout`` seconds."""


class WriteTimeout(AgentTimeout):
    """The request could not be written within ``write_timeout`` seconds."""


class PoolTimeout(AgentTimeout):
    """No socket became free for the request within ``pool_timeout`` seconds."""


class RemoteProtocolError(AgentError):
    """The server broke HTTP/1.1, or closed the connection, while we talked to it."""


class ResponseTooLarge(AgentError):
    """A buffered response body grew past ``max_response_size``: as received, or once decoded
    (so a small compressed body that would expand past it is stopped as it expands)."""


class DecodingError(AgentError):
    """A response body could not be decoded as its ``Content-Encoding`` says (corrupt or cut
    short gzip, deflate, br or zstd data)."""


class HTTPStatusError(AgentError):
    """``raise_for_status()`` met a 4xx or 5xx response. ``response`` is that response (its
    body read when it came from ``request()``), ``request`` the request that got it."""

    def __init__(self, message: str, *, request: Request | None, response: Response) -> None:
        super().__init__(message, origin=None if request is None else str(request.origin))
        self.request = request
        self.response = response


class RedirectError(AgentError):
    """A redirect could not be followed: its ``Location`` is missing a usable URL, it leaves
    https for http (``allow_https_downgrade`` is off), or it asks to send again a body that was
    a one-shot stream. ``response`` is the redirect response, its socket already released."""

    def __init__(self, message: str, *, response: Response, origin: str | None = None) -> None:
        super().__init__(message, origin=origin)
        self.response = response


class TooManyRedirects(RedirectError):
    """More redirects than ``max_redirects`` in a row: a loop, or a chain too long to follow."""


class StreamClosed(AgentError):
    """A response body was read after its stream was closed, or after it was already read."""


class ProxyError(AgentError):
    """The proxy would not carry the request: it refused the tunnel (``status``: 407 wants
    credentials, 403 forbids the target, 502 could not reach it) or broke the protocol.

    ``proxy`` names the proxy without its credentials; the pool is left whole.
    """

    def __init__(
        self, message: str, *, proxy: str, status: int | None = None, origin: str | None = None
    ) -> None:
        super().__init__(message, origin=origin)
        self.proxy = proxy
        self.status = status
