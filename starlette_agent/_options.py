"""One agent's options: every option, its default and its validation, in one frozen value.

``AgentOptions`` is the only definition of the options. ``Agent(**options)``, ``Agent(options)``,
the registry's mappings and the ``AGENT_*`` variables all end in one ``AgentOptions``,
validated once when it is made, and an agent takes it as it is. Errors name the option and the
value (``InvalidOption``, ``InvalidOptionType`` for a wrong type; ``.option`` holds the name).

``AgentOptionArgs`` is the same set of options as keyword arguments, so that a type checker
catches ``Agent(max_sockts=1)``; at run time ``__new__`` catches it, naming the closest option.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, Unpack

from anyio.abc import ByteStream

from ._address_guard import parse_networks
from ._errors import InvalidOption, InvalidOptionType, InvalidRequest
from ._hooks import Hooks, hook_methods
from ._option_table import explain_unknown_option
from ._proxy import parse_proxy
from ._request import validate_headers
from ._urls import Origin, parse_url, redact_url

#: Headers whose values repr never shows.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Framing headers: the agent sets them per request, so they are no default.
REFUSED_DEFAULT_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"upgrade"})

if TYPE_CHECKING:
    from starlette.config import Config

    from ._agent import Agent

__all__ = [
    "DEFAULT_OPTIONS",
    "AgentOptionArgs",
    "AgentOptions",
    "Connector",
    "HttpParser",
    "Scheduling",
]

Scheduling: TypeAlias = Literal["lifo", "fifo"]
HttpParser: TypeAlias = Literal["auto", "h11", "httptools"]
#: Opens a connection to an origin instead of the agent's own TCP/TLS dialling.
Connector: TypeAlias = Callable[[Origin], Awaitable[ByteStream]]
Networks: TypeAlias = Sequence[str | ipaddress.IPv4Network | ipaddress.IPv6Network]
#: Default headers: a mapping, or (name, value) pairs; normalised to a tuple of str pairs.
DefaultHeaders: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]

SCHEDULING_CHOICES: tuple[str, ...] = ("lifo", "fifo")
HTTP_PARSER_CHOICES: tuple[str, ...] = ("auto", "h11", "httptools")
DEFAULT_NAME = "default"  # the agent that AGENT_<OPTION> configures
DEFAULT_PREFIX = "AGENT_"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AgentOptions:
    """Every option of an ``Agent``, validated when made; Node's ``http.Agent`` names in comments.

    ``AgentOptions(max_sockets=10, scheduling="fifo")`` takes keywords only. It is a value:
    immutable, comparable, hashable, and ``replace(**changes)`` gives a validated copy.
    ``Agent(options)`` uses it as it is; ``options.create_agent()`` does the same.
    ``AgentOptions.from_env()`` reads it from ``AGENT_*`` variables.

    ``AgentSettings`` is another name for this same type (``AgentSettings is AgentOptions``).
    """

    keep_alive: bool = True  # keepAlive
    max_sockets: int | None = None  # maxSockets, per origin, active + idle
    max_total_sockets: int | None = None  # maxTotalSockets, all origins together
    max_free_sockets: int = 256  # maxFreeSockets, idle sockets kept per origin
    scheduling: Scheduling = "lifo"  # scheduling
    idle_timeout: float | None = 5.0  # timeout on free sockets; None keeps them until closed
    keep_alive_timeout_buffer: float = 1.0
    connect_timeout: float | None = 10.0
    read_timeout: float | None = 30.0  # timeout on sockets in use
    headers_timeout: float | None = 30.0  # undici's headersTimeout: request end to final head
    write_timeout: float | None = 30.0
    pool_timeout: float | None = None
    max_requests_per_socket: int | None = None
    max_response_size: int | None = None
    ssl_context: ssl.SSLContext | None = None
    local_address: str | None = None  # localAddress; normalised ("::0001" -> "::1")
    block_private_networks: bool = False  # refuse loopback, private, link-local... addresses
    allowed_networks: Networks = ()  # CIDRs let through; normalised to a tuple of CIDR strings
    connector: Connector | None = None  # createConnection
    proxy: str | None = None  # an http:// proxy URL, credentials allowed (never shown)
    trust_env: bool = False  # read http_proxy, https_proxy, all_proxy and no_proxy
    http_parser: HttpParser = "auto"  # "auto": httptools (llhttp, Node's parser) if installed
    # What build_request() adds to each request, and what request() and stream() do with it.
    base_url: str | None = None  # relative request URLs are resolved against it
    headers: DefaultHeaders = ()  # merged under each request's own headers
    decompress: bool = True  # send Accept-Encoding, decode gzip, deflate, br, zstd bodies
    follow_redirects: bool = False  # request() and stream() follow 301, 302, 303, 307, 308
    max_redirects: int = 20
    allow_https_downgrade: bool = False  # follow a redirect from https to http
    hooks: Hooks | None = None  # AgentHooks objects told of each step; kept as a tuple

    def __new__(cls, *args: Any, **options: Any) -> AgentOptions:
        # The generated __init__ keeps its typed signature for type checkers; __new__ sees the
        # same arguments first, so a misspelt name is an InvalidOptionType naming the closest
        # option rather than Python's bare TypeError.
        if args:
            raise InvalidOptionType(
                f"AgentOptions takes keyword arguments only (AgentOptions(max_sockets=10)), "
                f"got {args!r}"
            )
        check_option_names(options)
        return object.__new__(cls)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            try:
                checked = check(name, value)
            except InvalidOption as exc:
                exc.option = name
                raise
            if checked is not value:
                object.__setattr__(self, name, checked)
        if self.block_private_networks and self.connector is not None:
            raise InvalidOption(
                "block_private_networks cannot check where a custom connector connects; "
                "check the addresses in the connector, or drop one of the two options",
                option="block_private_networks",
            )
        if self.connector is not None and (self.proxy is not None or self.trust_env):
            raise InvalidOption(
                "a custom connector opens the connections itself, so a proxy (proxy= or "
                "trust_env=True) would never be used; tunnel in the connector, or drop it",
                option="proxy" if self.proxy is not None else "trust_env",
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(field.name for field in fields(cls))

    @classmethod
    def from_env(
        cls,
        config: Config | None = None,
        *,
        name: str = DEFAULT_NAME,
        prefix: str = DEFAULT_PREFIX,
        strict: bool = False,
    ) -> AgentOptions:
        """The options of agent ``name`` from ``AGENT_*`` variables; unset ones keep defaults.

        ``config`` is a ``starlette.config.Config`` (environment and ``.env`` file), by default
        the process environment. ``strict=True`` makes every ``AGENT_*`` variable that is no
        option an error (it always is in a ``.env`` file). ``AgentSettingsError`` names a bad
        variable and its value.
        """
        from ._settings import normalise_name, read_variables

        found = read_variables(config, prefix=prefix, strict=strict).get(normalise_name(name))
        return DEFAULT_OPTIONS if found is None else found.apply(DEFAULT_OPTIONS)

    def replace(self, **changes: Unpack[AgentOptionArgs]) -> AgentOptions:
        """A copy with ``changes`` applied, validated once; ``self`` when there are none."""
        if not changes:
            return self
        return replace(self, **changes)

    def create_agent(self) -> Agent:
        """A new ``Agent`` with these options (each call, a fresh one)."""
        from ._agent import Agent

        return Agent(self)

    def __repr__(self) -> str:
        changed = [
            f"{field.name}={_shown(field.name, getattr(self, field.name))!r}"
            for field in fields(self)
            if getattr(self, field.name) != field.default
        ]
        return f"AgentOptions({', '.join(changed)})"


class AgentOptionArgs(TypedDict, total=False):
    """The options of ``AgentOptions`` as keyword arguments: ``Agent(**options)``."""

    keep_alive: bool
    max_sockets: int | None
    max_total_sockets: int | None
    max_free_sockets: int
    scheduling: Scheduling
    idle_timeout: float | None
    keep_alive_timeout_buffer: float
    connect_timeout: float | None
    read_timeout: float | None
    headers_timeout: float | None
    write_timeout: float | None
    pool_timeout: float | None
    max_requests_per_socket: int | None
    max_response_size: int | None
    ssl_context: ssl.SSLContext | None
    local_address: str | None
    block_private_networks: bool
    allowed_networks: Networks
    connector: Connector | None
    proxy: str | None
    trust_env: bool
    http_parser: HttpParser
    base_url: str | None
    headers: DefaultHeaders
    decompress: bool
    follow_redirects: bool
    max_redirects: int
    allow_https_downgrade: bool
    hooks: Hooks | None


def _shown(name: str, value: Any) -> Any:
    """An option's value as repr shows it: a proxy URL without its credentials, default
    headers without the values of credential headers."""
    if name == "proxy" and value is not None:
        return str(parse_proxy(value))
    if name == "headers":
        return tuple((n, "[secure]" if n.lower() in SECRET_HEADERS else v) for n, v in value)
    return value


def resolve_options(options: object, changes: AgentOptionArgs) -> AgentOptions:
    """What ``Agent(options, **changes)`` is made with: ``options`` with ``changes``, validated
    once; the defaults, unvalidated again, for ``Agent()``."""
    if options is None:
        return AgentOptions(**changes) if changes else DEFAULT_OPTIONS
    if not isinstance(options, AgentOptions):
        raise InvalidOptionType(
            f"Agent() takes an AgentOptions or keyword options (Agent(max_sockets=10)); for a "
            f"mapping write Agent(**mapping); got {options!r}"
        )
    return options.replace(**changes)


def check_option_names(options: Any) -> None:
    """Refuse a keyword that is no option, naming the option it probably means."""
    for name in options:
        if name not in _CHECKS:
            raise InvalidOptionType(explain_unknown_option(name), option=name)


# --------------------------------------------------------------------------- checks
# Each takes the option's name and value and returns the value to keep (normalised or as is).


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionType(f"{name} must be True or False, got {value!r}")
    return value


def _count(*, minimum: int, optional: bool) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            expected = "an integer or None" if optional else "an integer"
            raise InvalidOptionType(f"{name} must be {expected}, got {value!r}")
        if value < minimum:
            raise InvalidOption(f"{name} must be >= {minimum}, got {value!r}")
        return value

    return check


def _seconds(*, optional: bool, zero_ok: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            expected = "a number of seconds or None" if optional else "a number of seconds"
            raise InvalidOptionType(f"{name} must be {expected}, got {value!r}")
        if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            raise InvalidOption(f"{name} must be a finite number of seconds {bound}, got {value!r}")
        return value

    return check


def _check_scheduling(name: str, value: Any) -> Any:
    # Exactly these strings, from code and from AGENT_SCHEDULING alike (no case folding).
    if value not in SCHEDULING_CHOICES:
        raise InvalidOption(f"{name} must be 'lifo' or 'fifo', got {value!r}")
    return value


def _check_ssl_context(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise InvalidOptionType(f"{name} must be an ssl.SSLContext or None, got {value!r}")
    return value


def _check_local_address(name: str, value: Any) -> str | None:
    # Checked now: a bad one would otherwise surface at the first connect, blaming the server.
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidOptionType(f"{name} must be an IP address string or None, got {value!r}")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidOption(
            f"{name} must be an IP address of this host such as '10.0.0.5' or '::1' "
            f"(not a host name), got {value!r}"
        ) from None
    canonical = str(address)
    return value if canonical == value else canonical


def _check_networks(name: str, value: Any) -> tuple[str, ...]:
    # Any sequence of CIDR strings or networks from code; kept as canonical strings, so options
    # stay hashable and print as they would be written in AGENT_ALLOWED_NETWORKS.
    return tuple(str(network) for network in parse_networks(value, option=name))


def _check_proxy(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidOptionType(f"{name} must be a proxy URL string or None, got {type(value)}")
    parse_proxy(value, option=name)  # its errors never show the password
    return value


def _check_http_parser(name: str, value: Any) -> Any:
    if value not in HTTP_PARSER_CHOICES:
        raise InvalidOption(f"{name} must be 'auto', 'h11' or 'httptools', got {value!r}")
    if value == "httptools" and not httptools_available():
        raise InvalidOption(
            f"{name}='httptools' needs the httptools package: pip install "
            "'starlette-agent[speed]' (or use 'auto', which falls back to h11)"
        )
    return value


def httptools_available() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def _check_base_url(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidOptionType(f"{name} must be an http:// or https:// URL or None, got {value!r}")
    try:
        parsed = parse_url(value)
    except InvalidRequest as exc:
        raise InvalidOption(f"{name}: {exc}") from None
    problem = None
    if parsed.authorization is not None:
        problem = "credentials (pass auth=(user, password) per request, or default headers)"
    elif "?" in value or "#" in value:
        problem = "a query or a fragment (pass params= per request)"
    if problem is not None:
        raise InvalidOption(f"{name} cannot hold {problem}, got {redact_url(value)!r}")
    return value


def _check_headers(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    # Any mapping or pairs from code (a JSON object from AGENT_HEADERS); kept as a tuple of str
    # pairs in order, so options stay hashable and compare by value.
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Mapping | Iterable):
        raise InvalidOptionType(
            f"{name} must be a mapping of header names to values, or (name, value) pairs; "
            f"got {value!r}"
        )
    try:
        checked = validate_headers(value)
    except InvalidRequest as exc:
        raise InvalidOption(f"{name}: {exc}") from None
    for raw_name, _ in checked:
        if raw_name.lower() in REFUSED_DEFAULT_HEADERS:
            raise InvalidOption(
                f"{name} cannot set {raw_name.decode()!r}: the agent frames each request itself"
            )
    normalised = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in checked)
    return normalised if normalised != value else value


def _check_connector(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise InvalidOptionType(f"{name} must be an async callable or None, got {value!r}")
    return value


def _check_hooks(name: str, value: Any) -> tuple[Any, ...] | None:
    # Kept as a tuple: options stay hashable, and hooks are called in the order given.
    if value is None:
        return None
    many = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    hooks = tuple(value) if many else (value,)
    for each in hooks:
        try:
            found = hook_methods(each)
        except TypeError as exc:
            raise InvalidOptionType(f"{name}: {exc}") from None
        if not found:
            raise InvalidOptionType(
                f"{name} must be an AgentHooks object (or a sequence of them) that overrides "
                f"some hooks, got {each!r}"
            )
    return hooks or None


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "keep_alive": _check_bool,
    "max_sockets": _count(minimum=1, optional=True),
    "max_total_sockets": _count(minimum=1, optional=True),
    "max_free_sockets": _count(minimum=0, optional=False),
    "scheduling": _check_scheduling,
    "idle_timeout": _seconds(optional=True),
    "keep_alive_timeout_buffer": _seconds(optional=False, zero_ok=True),
    "connect_timeout": _seconds(optional=True),
    "read_timeout": _seconds(optional=True),
    "headers_timeout": _seconds(optional=True),
    "write_timeout": _seconds(optional=True),
    "pool_timeout": _seconds(optional=True),
    "max_requests_per_socket": _count(minimum=1, optional=True),
    "max_response_size": _count(minimum=0, optional=True),
    "ssl_context": _check_ssl_context,
    "local_address": _check_local_address,
    "block_private_networks": _check_bool,
    "allowed_networks": _check_networks,
    "connector": _check_connector,
    "proxy": _check_proxy,
    "trust_env": _check_bool,
    "http_parser": _check_http_parser,
    "base_url": _check_base_url,
    "headers": _check_headers,
    "decompress": _check_bool,
    "follow_redirects": _check_bool,
    "max_redirects": _count(minimum=0, optional=False),
    "allow_https_downgrade": _check_bool,
    "hooks": _check_hooks,
}

#: The defaults, validated once at import; ``Agent()`` and the registry share them.
DEFAULT_OPTIONS = AgentOptions()
