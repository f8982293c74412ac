"""One agent's options, validated once.

``AgentOptions`` is the single place where the Agent constructor's options are checked, so the
constructor and the settings loader (which reads ``AGENT_*`` variables) reject the same values
with the same messages. Errors name the option and the value.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._address_guard import parse_networks
from ._errors import InvalidOption, InvalidOptionType

if TYPE_CHECKING:
    from anyio.abc import ByteStream

    from ._urls import Origin

Scheduling: TypeAlias = Literal["lifo", "fifo"]
Connector: TypeAlias = "Callable[[Origin], Awaitable[ByteStream]]"

SCHEDULING_CHOICES: tuple[str, ...] = ("lifo", "fifo")


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """Every option of an ``Agent``, with Node's ``http.Agent`` names in the comments."""

    keep_alive: bool = True  # keepAlive
    max_sockets: int | None = None  # maxSockets, per origin, active + idle
    max_total_sockets: int | None = None  # maxTotalSockets, all origins together
    max_free_sockets: int = 256  # maxFreeSockets, idle sockets kept per origin
    scheduling: Scheduling = "lifo"  # scheduling
    idle_timeout: float | None = 5.0  # timeout on free sockets; None keeps them until closed
    keep_alive_timeout_buffer: float = 1.0
    connect_timeout: float | None = 10.0
    read_timeout: float | None = 30.0
    headers_timeout: float | None = 30.0  # undici's headersTimeout: request end to final head
    write_timeout: float | None = 30.0
    pool_timeout: float | None = None
    max_requests_per_socket: int | None = None
    max_response_size: int | None = None
    ssl_context: ssl.SSLContext | None = None
    local_address: str | None = None
    block_private_networks: bool = False  # refuse loopback, private, link-local... addresses
    allowed_networks: tuple[str, ...] = ()  # CIDRs let through despite block_private_networks
    connector: Connector | None = None

    def __post_init__(self) -> None:
        _check_bool("keep_alive", self.keep_alive)
        _check_count("max_sockets", self.max_sockets, minimum=1, optional=True)
        _check_count("max_total_sockets", self.max_total_sockets, minimum=1, optional=True)
        _check_count("max_free_sockets", self.max_free_sockets, minimum=0, optional=False)
        if self.scheduling not in SCHEDULING_CHOICES:
            raise InvalidOption(f"scheduling must be 'lifo' or 'fifo', got {self.scheduling!r}")
        _check_seconds("idle_timeout", self.idle_timeout, optional=True)
        _check_seconds("keep_alive_timeout_buffer", self.keep_alive_timeout_buffer, zero_ok=True)
        for name in (
            "connect_timeout",
            "read_timeout",
            "headers_timeout",
            "write_timeout",
            "pool_timeout",
        ):
            _check_seconds(name, getattr(self, name), optional=True)
        _check_count(
            "max_requests_per_socket", self.max_requests_per_socket, minimum=1, optional=True
        )
        _check_count("max_response_size", self.max_response_size, minimum=0, optional=True)
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise InvalidOptionType(
                f"ssl_context must be an ssl.SSLContext or None, got {self.ssl_context!r}"
            )
        if self.local_address is not None and (
            not isinstance(self.local_address, str) or not self.local_address
        ):
            raise InvalidOption(
                f"local_address must be a non-empty IP address string or None, "
                f"got {self.local_address!r}"
            )
        _check_bool("block_private_networks", self.block_private_networks)
        # Any sequence of CIDR strings or networks from code; kept as canonical strings, so
        # options stay hashable and print as they would be written in AGENT_ALLOWED_NETWORKS.
        networks = parse_networks(self.allowed_networks, option="allowed_networks")
        object.__setattr__(self, "allowed_networks", tuple(str(net) for net in networks))
        if self.connector is not None and not callable(self.connector):
            raise InvalidOptionType(
                f"connector must be an async callable or None, got {self.connector!r}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(field.name for field in fields(cls))


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidOptionType(f"{name} must be True or False, got {value!r}")


def _check_count(name: str, value: Any, *, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an integer or None" if optional else "an integer"
        raise InvalidOptionType(f"{name} must be {expected}, got {value!r}")
    if value < minimum:
        raise InvalidOption(f"{name} must be >= {minimum}, got {value!r}")


def _check_seconds(name: str, value: Any, *, optional: bool = False, zero_ok: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = "a number of seconds or None" if optional else "a number of seconds"
        raise InvalidOptionType(f"{name} must be {expected}, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise InvalidOption(f"{name} must be a finite number of seconds {bound}, got {value!r}")
