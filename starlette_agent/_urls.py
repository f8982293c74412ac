"""URLs and origins: what a request's URL says about where it goes.

Parsing is strict because a URL that reaches the wire half-understood is how request smuggling
and misrouted requests start: anything we would have to guess about raises ``InvalidRequest``
before a connection is opened.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ._errors import InvalidRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

# Never allowed anywhere in a URL we send: space and control characters end or split the request
# line, and parsers disagree on the rest (browsers strip some, others keep them).
_FORBIDDEN_URL_CHARACTERS = frozenset(map(chr, range(0x21))) | {"\x7f"}
# The WHATWG URL standard's forbidden domain code points that can reach a host here: a host with
# one of them is read differently by a browser, a proxy and a resolver.
_FORBIDDEN_HOST_CHARACTERS = frozenset("#%/:<>?@[\\]^|")
_IPV6_CHARACTERS = frozenset("0123456789abcdef:.")
_RADIX_DIGITS = {
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
    16: frozenset("0123456789abcdef"),
}


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
    shown = redact_url(url)  # messages name the URL, never its password
    bad = _FORBIDDEN_URL_CHARACTERS.intersection(url)
    if bad:
        names = ", ".join(sorted(repr(c) for c in bad))
        raise InvalidRequest(f"URL {shown!r} contains forbidden characters ({names})")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"invalid URL {shown!r}: {exc}") from exc
    _check_authority(parts.netloc, shown)
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidRequest(
            f"URL {shown!r} has no scheme; use http:// or https://, or give the agent a "
            "base_url for relative URLs"
        )
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(
            f"unsupported URL scheme {parts.scheme!r} in {shown!r}; use http:// or https://"
        )
    host = _normalise_host(parts, shown)
    if port == 0:
        raise InvalidRequest(f"URL {shown!r} has port 0")
    origin = Origin(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])
    target = _request_target(parts, shown)
    return ParsedURL(origin, target, _basic_authorization(parts), origin.host_header)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` shown as ``[secure]`` (as httpx
    shows it), for messages, logs and ``Response.url``. Never fails, whatever the URL."""
    if "@" not in url:
        return url  # no user:password@ (the common case, on every response)
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:[secure]@{host}{rest[end:]}"


def has_scheme(url: str) -> bool:
    """Whether ``url`` is absolute (``http://...``) rather than relative (``/users/1``)."""
    return _SCHEME.match(url) is not None


def join_url(base_url: str, url: str) -> str:
    """``url`` resolved against ``base_url``: an absolute URL is kept, a relative one is
    appended to the base's path (``http://api/v1`` and ``/users`` give ``http://api/v1/users``,
    as httpx does, rather than replacing the base's path as a browser would)."""
    if has_scheme(url):
        return url
    if url.startswith("//"):
        raise InvalidRequest(
            f"URL {redact_url(url)!r} is scheme-relative; write the scheme, or a path for the "
            "base_url"
        )
    base = urlsplit(base_url)
    relative = urlsplit(url)
    path = base.path if base.path.endswith("/") else base.path + "/"
    joined = path + relative.path.lstrip("/")
    return urlunsplit((base.scheme, base.netloc, joined, relative.query, relative.fragment))


def _check_authority(netloc: str, url: str) -> None:
    # urlsplit takes the host after the last "@" and keeps a backslash in it; a browser reads a
    # backslash as "/" and some parsers take the first "@". Where they would disagree about the
    # host, nothing is guessed.
    if "\\" in netloc:
        raise InvalidRequest(
            f"URL {url!r} has a backslash in its authority; browsers read it as '/', other "
            "parsers do not: percent-encode it (%5C) in credentials"
        )
    if netloc.count("@") > 1:
        raise InvalidRequest(
            f"URL {url!r} has more than one '@' in its authority; percent-encode an '@' in the "
            "user name or password as %40"
        )


def _normalise_host(parts: SplitResult, url: str) -> str:
    """The host as the address or name a connection goes to, read as a browser reads it."""
    host = parts.hostname
    if not host:
        raise InvalidRequest(f"URL {url!r} has no host")
    if ":" in host:  # urlsplit lets colons through only from a bracketed IPv6 literal
        return _ipv6_host(host, url)
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidRequest(f"URL {url!r} has a host that is not a valid domain name") from exc
    # Checked after IDNA, which maps some full-width characters to these.
    if _FORBIDDEN_HOST_CHARACTERS.intersection(name):
        raise InvalidRequest(f"URL {url!r} has an invalid host {host!r}")
    if not _ends_in_a_number(name):
        return name
    address = _ipv4_host(name)
    if address is None:
        raise InvalidRequest(
            f"URL {url!r} has a host {host!r} that ends in a number but is not an IPv4 address"
        )
    return address


def _ipv6_host(host: str, url: str) -> str:
    # A zone ("%25eth0") names an interface of this machine: not something a URL may choose.
    if not _IPV6_CHARACTERS.issuperset(host):
        raise InvalidRequest(f"URL {url!r} has an invalid IPv6 address {host!r}")
    try:
        return str(ipaddress.IPv6Address(host))
    except ValueError as exc:
        raise InvalidRequest(f"URL {url!r} has an invalid IPv6 address {host!r}") from exc


# Numeric hosts, as the WHATWG URL standard reads them: resolvers (inet_aton) and browsers take
# "2130706433", "0x7f.1" and "0177.0.0.1" as 127.0.0.1, so the origin, the pool key, the Host
# header and any address check must see 127.0.0.1 too.


def _ends_in_a_number(name: str) -> bool:
    labels = name.split(".")
    if labels[-1] == "":
        if len(labels) == 1:
            return False
        labels.pop()
    last = labels[-1]
    return (last != "" and last.isdigit()) or _ipv4_number(last) is not None


def _ipv4_host(name: str) -> str | None:
    """The dotted-quad form of ``name``, or None when it is no IPv4 address."""
    labels = name.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if len(labels) > 4:
        return None
    numbers = [_ipv4_number(label) for label in labels]
    if None in numbers:
        return None
    *leading, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(leading))
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(text: str) -> int | None:
    if not text:
        return None
    radix = 10
    if text.startswith("0x"):
        text, radix = text[2:], 16
    elif len(text) > 1 and text.startswith("0"):
        text, radix = text[1:], 8
    if not text:
        return 0
    if not _RADIX_DIGITS[radix].issuperset(text):
        return None
    return int(text, radix)


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
