"""URLs and origins: what a request's URL says about where it goes.

Parsing is strict because a URL that reaches the wire half-understood is how request smuggling
and misrouted requests start: anything we would have to guess about raises ``InvalidRequest``
before a connection is opened.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, unquote, urlsplit

from ._errors import InvalidRequest

DEFAULT_PORTS = {"http": 80, "https": 443}

# Characters never allowed anywhere in a URL we send: they end or split the request line.
_FORBIDDEN_URL_CHARACTERS = frozenset("\r\n\x00 \t")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where sockets go: scheme, host and port. The part of a URL a socket can be shared for."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 hosts in brackets, as in a URL."""
        return f"{_bracketed(self.host)}:{self.port}"

    @property
    def host_header(self) -> bytes:
        """The ``Host`` header value: the port is left out when it is the scheme's default."""
        host = _bracketed(self.host)
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host.encode("ascii")
        return f"{host}:{self.port}".encode("ascii")


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A URL taken apart for sending: the origin, the request target and any credentials."""

    origin: Origin
    target: bytes
    authorization: bytes | None
    host_header: bytes


def parse_url(url: str) -> ParsedURL:
    """Split ``url`` into origin and request target, or raise ``InvalidRequest`` naming the flaw."""
    if not isinstance(url, str):
        raise InvalidRequest(f"URL must be a str, got {type(url).__name__}: {url!r}")
    return _parse_url(url)


@lru_cache(maxsize=512)
def _parse_url(url: str) -> ParsedURL:
    # Cached: services call the same few URLs over and over, and parsing is pure.
    if not url:
        raise InvalidRequest("URL is empty")
    bad = _FORBIDDEN_URL_CHARACTERS.intersection(url)
    if bad:
        names = ", ".join(sorted(repr(c) for c in bad))
        raise InvalidRequest(f"URL {url!r} contains forbidden characters ({names})")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"invalid URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidRequest(f"URL {url!r} has no scheme; use http:// or https://")
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}; use http:// or https://"
        )
    host = _normalise_host(parts, url)
    if port == 0:
        raise InvalidRequest(f"URL {url!r} has port 0")
    origin = Origin(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])
    target = _request_target(parts, url)
    return ParsedURL(origin, target, _basic_authorization(parts), origin.host_header)


def _normalise_host(parts: SplitResult, url: str) -> str:
    host = parts.hostname
    if not host:
        raise InvalidRequest(f"URL {url!r} has no host")
    if any(c in host for c in "/\\@?#%"):
        raise InvalidRequest(f"URL {url!r} has an invalid host {host!r}")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidRequest(f"URL {url!r} has a host that is not a valid domain name") from exc


def _request_target(parts: SplitResult, url: str) -> bytes:
    path = parts.path or "/"
    if not path.startswith("/"):
        raise InvalidRequest(f"URL {url!r} has a path that does not start with '/'")
    target = f"{path}?{parts.query}" if parts.query else path
    try:
        return target.encode("ascii")
    except UnicodeEncodeError:
        # Non-ASCII in the path or query is percent-encoded as UTF-8, as browsers do.
        return "".join(
            c if ord(c) < 128 else "".join(f"%{b:02X}" for b in c.encode()) for c in target
        ).encode("ascii")


def _basic_authorization(parts: SplitResult) -> bytes | None:
    if parts.username is None and parts.password is None:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return b"Basic " + base64.b64encode(credentials.encode())


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
