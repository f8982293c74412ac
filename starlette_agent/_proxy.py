"""Which proxy a request goes through: the agent's ``proxy=``, or the environment (``trust_env``).

The environment is read as curl, httpx and Node 24 read it:

* ``http_proxy`` for ``http://`` targets, ``https_proxy`` for ``https://`` targets,
  ``all_proxy`` for either when the specific one is unset. Lower-case names win over upper-case
  ones. ``HTTP_PROXY`` (upper case) is ignored when ``REQUEST_METHOD`` is set: under CGI a
  client's ``Proxy:`` request header arrives as ``HTTP_PROXY`` ("httpoxy").
* ``no_proxy`` lists targets that go direct, separated by commas or spaces: ``*`` (all), a
  domain (``example.com`` matches it and its subdomains; a leading ``.`` or ``*.`` means the
  same), an IP address, a CIDR range, each optionally with ``:port``.

A proxy is an ``http://`` URL (a bare ``host:port`` is read as one). Its credentials become a
``Proxy-Authorization: Basic`` header for the proxy alone: they never reach the target, and
``str()``/``repr()`` of a ``Proxy`` leave them out, so they appear in no log, error or stats.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ._errors import InvalidOption
from ._urls import DEFAULT_PORTS, Origin, parse_url

__all__ = ["NoProxy", "Proxy", "ProxyRoutes", "parse_proxy"]

# Bound on remembered routing decisions: a service may call unboundedly many origins.
_MAX_ROUTES = 1024


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where to connect, and the ``Proxy-Authorization`` it wants (if any)."""

    origin: Origin
    authorization: bytes | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return str(self.origin)  # never the credentials

    def __repr__(self) -> str:
        credentials = " (with credentials)" if self.authorization is not None else ""
        return f"<Proxy {self.origin}{credentials}>"


def parse_proxy(url: str, *, option: str = "proxy") -> Proxy:
    """Read a proxy URL, or raise ``InvalidOption`` naming ``option`` (never the password)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidOption(f"{option} must be a proxy URL such as 'http://proxy:3128'")
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidOption(f"{option}: {_redacted(text)!r} is not a valid proxy URL") from None
    if parts.scheme.lower() != "http":
        raise InvalidOption(
            f"{option}: {parts.scheme!r} proxies are not supported ({_redacted(text)!r}); "
            "use an http:// proxy (https:// targets are tunnelled through it with CONNECT)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOption(f"{option}: a proxy URL has no path ({_redacted(text)!r})")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        origin = parse_url(f"http://{host}:{parts.port or 80}/").origin
    except ValueError:
        raise InvalidOption(f"{option}: {_redacted(text)!r} has no valid host") from None
    if parts.username is None and parts.password is None:
        return Proxy(origin)
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return Proxy(origin, b"Basic " + base64.b64encode(credentials.encode()))


class NoProxy:
    """A ``no_proxy`` list: which targets go direct."""

    def __init__(self, value: str) -> None:
        self.everything = False
        self._domains: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in value.replace(",", " ").split():
            self._add(entry.strip().lower())

    def _add(self, entry: str) -> None:
        if entry == "*":
            self.everything = True
            return
        host, port = _split_port(entry)
        try:
            self._networks.append((ipaddress.ip_network(host, strict=False), port))
            return
        except ValueError:
            pass
        domain = host.removeprefix("*").removeprefix(".")
        if domain:
            self._domains.append((domain, port))

    def matches(self, origin: Origin) -> bool:
        if self.everything:
            return True
        host = origin.host.lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in network and port in (None, origin.port)
                for network, port in self._networks
            )
        return any(
            (host == domain or host.endswith("." + domain)) and port in (None, origin.port)
            for domain, port in self._domains
        )


class ProxyRoutes:
    """The proxy of each origin: ``proxy`` for every one, or the environment's choice."""

    def __init__(
        self, *, proxy: str | None, trust_env: bool, environ: Mapping[str, str] | None = None
    ) -> None:
        self._fixed = parse_proxy(proxy) if proxy is not None else None
        self._by_scheme: dict[str, Proxy | None] = {}
        self._no_proxy = NoProxy("")
        if self._fixed is None and trust_env:
            env = os.environ if environ is None else environ
            self._by_scheme = {scheme: _environment_proxy(env, scheme) for scheme in DEFAULT_PORTS}
            self._no_proxy = NoProxy(_variable(env, "no_proxy") or "")
        self._routes: dict[Origin, Proxy | None] = {}

    @property
    def enabled(self) -> bool:
        return self._fixed is not None or any(self._by_scheme.values())

    def proxy_for(self, origin: Origin) -> Proxy | None:
        """The proxy to reach ``origin`` through, or None to connect directly."""
        if self._fixed is not None:
            return self._fixed
        if not self._by_scheme:
            return None
        try:
            return self._routes[origin]
        except KeyError:
            pass
        route = None if self._no_proxy.matches(origin) else self._by_scheme.get(origin.scheme)
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[origin] = route
        return route


def _environment_proxy(env: Mapping[str, str], scheme: str) -> Proxy | None:
    name = f"{scheme}_proxy"
    value = _variable(env, name, cgi_safe=scheme == "http") or _variable(env, "all_proxy")
    if not value:
        return None
    return parse_proxy(value, option=_variable_name(env, name) or "all_proxy")


def _variable(env: Mapping[str, str], name: str, *, cgi_safe: bool = False) -> str | None:
    value = env.get(name)
    if value is None and not (cgi_safe and "REQUEST_METHOD" in env):
        value = env.get(name.upper())
    return value.strip() if value is not None else None


def _variable_name(env: Mapping[str, str], name: str) -> str | None:
    return name if name in env else name.upper() if name.upper() in env else None


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        return host, _port(rest.removeprefix(":"))
    if entry.count(":") == 1:  # host:port, not a bare IPv6 address
        host, _, port = entry.partition(":")
        return host, _port(port)
    return entry, None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    _, at, hostpart = rest.rpartition("@")
    return f"{scheme}://***@{hostpart}" if at else url
