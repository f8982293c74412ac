"""Opening a TCP socket to an origin: resolve, check the addresses, connect to a checked one.

Why our own dialer rather than ``loop.create_connection(host, port)`` or ``anyio.connect_tcp``:

* **Checked addresses only.** The SSRF guard must see every address DNS returned, and the socket
  must then go to an address it passed. A connect call given the host name would resolve it a
  second time, and a DNS answer that changed in between (rebinding) would slip past the check.
* **No socket outlives a cancelled connect.** CPython's ``create_connection`` with
  ``happy_eyeballs_delay`` leaks the socket of an attempt cancelled mid-race. Here each attempt
  owns its socket and closes it on every way out except handing it over.
* **One path for every event loop.** The connected socket is handed to asyncio (and uvloop) as
  ``create_connection(sock=...)``, or to anyio's ``SocketStream.from_socket`` on trio.

Attempts follow RFC 8305 ("happy eyeballs"): addresses interleaved by family, the next attempt
started when the previous one fails or after ``ATTEMPT_DELAY`` without an answer, the first
connected socket wins and every other attempt is cancelled and closed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio

__all__ = ["ATTEMPT_DELAY", "AddressCheck", "Target", "dial", "resolve"]

#: RFC 8305's recommended delay between connection attempts (also anyio's).
ATTEMPT_DELAY = 0.25


class AddressCheck(Protocol):
    """What the dialer asks of the SSRF guard (``AddressGuard``)."""

    @property
    def enabled(self) -> bool: ...

    def check(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses that may be connected to; raises ``BlockedAddress`` if none may."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """One address to try: its family and the socket address to connect to."""

    family: socket.AddressFamily
    address: tuple[str, int]


async def resolve(host: str, port: int) -> list[Target]:
    """Every address of ``host``, in the resolver's order, without duplicates.

    An IP literal is its own answer: no lookup, and no thread.
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [Target(family, (str(literal), port))]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    targets: list[Target] = []
    for family, _, _, _, sockaddr in infos:
        target = Target(family, (str(sockaddr[0]), int(sockaddr[1])))
        if target not in targets:
            targets.append(target)
    return targets


async def dial(
    host: str,
    port: int,
    *,
    guard: AddressCheck | None,
    local_address: str | None,
    attempt_delay: float = ATTEMPT_DELAY,
) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host:port``; the caller owns it.

    Raises ``OSError`` (a ``socket.gaierror`` when the name does not resolve) when no address
    connects, and the guard's ``BlockedAddress`` when it permits none of them.
    """
    targets = await resolve(host, port)
    if guard is not None and guard.enabled:
        permitted = guard.check(host, [target.address[0] for target in targets])
        targets = [target for target in targets if target.address[0] in permitted]
    if local_address is not None:
        family = _family_of(local_address)
        targets = [target for target in targets if target.family == family]
        if not targets:
            raise OSError(
                errno.EAFNOSUPPORT,
                f"{host} has no address of the family of local_address {local_address}",
            )
    if not targets:
        raise OSError(errno.EADDRNOTAVAIL, f"{host} resolved to no address")
    ordered = _interleave(targets)
    if len(ordered) == 1:
        return await _attempt(ordered[0], local_address)
    return await _race(ordered, local_address, attempt_delay)


async def _attempt(target: Target, local_address: str | None) -> socket.socket:
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_address is not None:
            sock.bind((local_address, 0))
        try:
            sock.connect(target.address)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error)) from None
        return sock
    except BaseException:
        sock.close()
        raise


async def _race(
    targets: Sequence[Target], local_address: str | None, delay: float
) -> socket.socket:
    winner: socket.socket | None = None
    errors: list[OSError] = []

    async def attempt(target: Target, failed: anyio.Event) -> None:
        nonlocal winner
        try:
            sock = await _attempt(target, local_address)
        except OSError as exc:
            errors.append(exc)
            failed.set()
            return
        if winner is None:
            winner = sock
            group.cancel_scope.cancel()
        else:
            sock.close()  # connected a moment after another attempt won

    try:
        async with anyio.create_task_group() as group:
            for target in targets:
                failed = anyio.Event()
                group.start_soon(attempt, target, failed)
                with anyio.move_on_after(delay):
                    await failed.wait()
    except BaseException:
        # Cancelled from outside after an attempt won: that socket is ours to close.
        if winner is not None:
            winner.close()
        raise
    if winner is None:
        raise errors[0] if len(errors) == 1 else _combined(errors)
    return winner


def _interleave(targets: Sequence[Target]) -> list[Target]:
    """Alternate address families, starting with the resolver's first choice (RFC 8305 §4)."""
    first = targets[0].family
    preferred = [target for target in targets if target.family == first]
    others = [target for target in targets if target.family != first]
    ordered: list[Target] = []
    for index in range(max(len(preferred), len(others))):
        ordered += preferred[index : index + 1] + others[index : index + 1]
    return ordered


def _family_of(address: str) -> socket.AddressFamily:
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return socket.AF_INET
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _combined(errors: Sequence[OSError]) -> OSError:
    messages = sorted({str(error) for error in errors})
    if len(messages) == 1:
        return errors[0]
    return OSError(f"every address failed: {'; '.join(messages)}")
