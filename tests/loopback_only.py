"""A safety net for tests of the address guard: no connection may leave the machine.

This machine has routes out, and a test of the SSRF guard aims requests at addresses the guard
should refuse; if the guard is broken, the agent must still not send a packet elsewhere. The
``loopback_only`` fixture patches ``socket.socket.connect`` and ``connect_ex`` (which asyncio's
and trio's socket code call) so that any address outside 127.0.0.0/8 and ::1 raises, and it logs
every attempt. A refused attempt also fails the test at teardown, even if the agent swallowed
the error. uvloop connects in C, past this patch: tests that rely on it run on asyncio and trio.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = [
    "ConnectLog",
    "OffMachineConnect",
    "is_loopback",
    "loopback_only_fixture",
    "refuse_off_machine_connects",
    "socket_backends",
]

# The anyio backends on which the patch sees every connect.
socket_backends = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]


class OffMachineConnect(AssertionError):
    """A test tried to connect outside loopback."""


@dataclass
class ConnectLog:
    """Every address a socket tried to connect to while the fixture was active."""

    attempts: list[Any] = field(default_factory=list)
    refused: list[Any] = field(default_factory=list)

    def check(self, address: Any) -> None:
        self.attempts.append(address)
        if not is_loopback(address):
            self.refused.append(address)
            raise OffMachineConnect(f"a test tried to connect off this machine, to {address!r}")


def is_loopback(address: Any) -> bool:
    """True for a loopback IP socket address, and for Unix socket paths."""
    if isinstance(address, str | bytes):
        return True  # AF_UNIX: a path on this machine
    host = str(address[0]).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: connect() would resolve it itself
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def refuse_off_machine_connects(monkeypatch: pytest.MonkeyPatch) -> ConnectLog:
    """Patch ``connect`` and ``connect_ex`` (undone by ``monkeypatch``); return their log."""
    log = ConnectLog()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        log.check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        log.check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return log


# Import ``loopback_only_fixture`` into a test module to use ``loopback_only`` there.
@pytest.fixture(name="loopback_only")
def loopback_only_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectLog]:
    """Refuse, log and fail any connect() outside loopback for the duration of the test."""
    log = refuse_off_machine_connects(monkeypatch)
    yield log
    assert log.refused == [], f"connections were attempted off this machine: {log.refused}"
