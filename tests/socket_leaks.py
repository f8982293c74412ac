"""A pytest plugin failing any test that leaves a client-side TCP socket open.

A test may leave no client socket behind: every socket the agent opens must be closed by the
time the test's fixtures (agents, event loop) are gone. ``@pytest.mark.allow_socket_leak(reason)``
opts a test out, for a socket it keeps across tests on purpose.

A leaked socket is caught whichever way it goes:

* it is still open after the teardown (referenced somewhere, or garbage not yet collected): the
  descriptor check below finds it; the collector then runs, to tell which were garbage;
* it was garbage, and the collector (or its last reference going) closed it during the test:
  Python warns "unclosed <socket...>" or "unclosed transport", which this plugin's warning
  filter turns into an exception in a finaliser, an error of that test (pytest's check for
  unraisable exceptions).

The check reads the process's own file descriptors (``/proc/self/fd``: a socket reads as
``socket:[inode]``) and finds each TCP socket's addresses and state in ``/proc/net/tcp`` and
``/proc/net/tcp6``.

What is not a client socket:

* listening sockets;
* server-side accepted sockets: the test servers run in a thread of this very process
  (``servers.py``), so their sockets are in our descriptor table too. Their local port is a port
  this process listens on; a client's local port never is;
* anything that is not TCP (the Unix socketpairs event loops wake themselves with).

A TCP socket whose connection was reset or never completed is no longer in the kernel's tables,
yet its descriptor is still open: those are found by asking the descriptor itself (``TCP_INFO``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import anyio
import pytest

LEAK_TIMEOUT = 1.0  # seconds a closing socket gets to go after the teardown

# The states of include/net/tcp_states.h, as /proc/net/tcp and TCP_INFO number them.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}


@dataclass(frozen=True)
class TcpSocket:
    """One open TCP socket of this process."""

    fd: int
    inode: int
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str

    def __str__(self) -> str:
        return (
            f"{_address(self.local)} -> {_address(self.remote)} {self.state} "
            f"(fd {self.fd}, inode {self.inode})"
        )


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- reading /proc


def _socket_fds() -> dict[int, int]:
    """inode -> fd of every socket descriptor this process has open."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since listdir, or listdir's own descriptor
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:["):
                found[int(target[len("socket:[") : -1])] = int(name)
    return found


def _decode_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ``("127.0.0.1", 8080)``: /proc prints each 32-bit word of the address
    in host byte order, the port as a plain number."""
    host_hex, port_hex = text.split(":")
    words = [int(host_hex[i : i + 8], 16) for i in range(0, len(host_hex), 8)]
    packed = b"".join(word.to_bytes(4, sys.byteorder) for word in words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(port_hex, 16)


def _kernel_table(inodes: set[int]) -> dict[int, tuple[tuple[str, int], tuple[str, int], str]]:
    """inode -> (local, remote, state) for the TCP sockets among ``inodes`` the kernel lists."""
    table: dict[int, tuple[tuple[str, int], tuple[str, int], str]] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(path) as file:
            text = file.read()
        # The tables list every process's sockets and thousands of TIME_WAIT leftovers after a
        # load test: look up our own inodes rather than parse every line.
        for line in _lines_with_inodes(text, inodes):
            fields = line.split()
            state = TCP_STATES.get(int(fields[3], 16), fields[3])
            local, remote = _decode_address(fields[1]), _decode_address(fields[2])
            table[int(fields[9])] = (local, remote, state)
    return table


def _lines_with_inodes(text: str, inodes: set[int]) -> Iterator[str]:
    for inode in inodes:
        at = text.find(f" {inode} ")
        while at != -1:
            line = text[text.rfind("\n", 0, at) + 1 : text.find("\n", at)]
            if line.split()[9:10] == [str(inode)]:  # not a number in some other column
                yield line
                break
            at = text.find(f" {inode} ", at + 1)


def _ask_descriptor(fd: int, inode: int) -> TcpSocket | None:
    """The socket behind ``fd`` if it is TCP: for sockets no longer in the kernel's tables (reset,
    or a connect that failed) whose descriptor nobody closed."""
    if socket.getdefaulttimeout() is not None:
        return None  # wrapping the descriptor would switch it to non-blocking mode
    try:
        sock = socket.socket(fileno=fd)  # family, type and protocol are read from the descriptor
    except OSError:
        return None  # closed meanwhile
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto != socket.IPPROTO_TCP:
            return None
        if os.readlink(f"/proc/self/fd/{fd}") != f"socket:[{inode}]":
            return None  # the descriptor was closed and reused since we listed it
        local = sock.getsockname()[:2]
        try:
            remote = sock.getpeername()[:2]
        except OSError:
            remote = ("?", 0)
        state = TCP_STATES.get(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0], "?")
        return TcpSocket(fd, inode, local, remote, state)
    except OSError:
        return None
    finally:
        sock.detach()  # the descriptor is not ours to close


def open_tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket this process has a descriptor for, listening ones included."""
    fds = _socket_fds()
    table = _kernel_table(set(fds))
    found: list[TcpSocket] = []
    for inode, fd in fds.items():
        if inode in table:
            local, remote, state = table[inode]
            found.append(TcpSocket(fd, inode, local, remote, state))
        elif (unlisted := _ask_descriptor(fd, inode)) is not None:
            found.append(unlisted)
    return found


# --------------------------------------------------------------------------- the check


class SocketLeakCheck:
    """Remembers the client sockets open now; ``leaked()`` lists the ones opened since."""

    def __init__(self) -> None:
        # Ports this process listened on at any look: a server-side socket may outlive its
        # listener by a moment, and must not turn into a "client" then.
        self._listening_ports: set[int] = set()
        self._baseline = {sock.inode for sock in self.client_sockets()}

    def client_sockets(self) -> list[TcpSocket]:
        sockets = open_tcp_sockets()
        self._listening_ports |= {sock.local[1] for sock in sockets if sock.state == "LISTEN"}
        return [
            sock
            for sock in sockets
            if sock.state != "LISTEN" and sock.local[1] not in self._listening_ports
        ]

    def leaked(self) -> list[TcpSocket]:
        return [sock for sock in self.client_sockets() if sock.inode not in self._baseline]

    def wait_for_no_leaks(self, timeout: float = 1.0, interval: float = 0.01) -> list[TcpSocket]:
        """Poll until no socket opened since the baseline is left, or ``timeout`` passes; returns
        what is still open (empty when clean). For use once the event loop is gone.

        The garbage collector is held off meanwhile: a socket only the collector would close was
        leaked all the same, and must not pass or fail by the luck of when it runs."""
        with _gc_paused():
            deadline = time.monotonic() + timeout
            while (leaked := self.leaked()) and time.monotonic() < deadline:
                time.sleep(interval)
        return leaked

    async def settled(self, timeout: float = 1.0, interval: float = 0.01) -> list[TcpSocket]:
        """``wait_for_no_leaks`` from inside a running event loop, which keeps serving the
        closes in progress: a test may check mid-way that what it closed is really closed."""
        deadline = time.monotonic() + timeout
        while (leaked := self.leaked()) and time.monotonic() < deadline:
            await anyio.sleep(interval)
        return leaked


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- dropped sockets

# The warnings Python gives when it finalises a TCP socket, or its transport, nobody closed: the
# standard socket (asyncio and trio hold these), asyncio's socket and TLS transports, uvloop's.
UNCLOSED_WARNING = (
    r"unclosed (<socket\.socket [^>]*proto=6"
    r"|transport <[\w.]*(_SelectorSocketTransport|_SSLProtocolTransport)"
    r"|resource <TCPTransport)"
)


def collect_dropped_sockets() -> list[str]:
    """Run the garbage collector; returns its "unclosed" warnings for TCP sockets (and
    transports) nobody closed. Any other warning it raises goes on to pytest as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", UNCLOSED_WARNING, ResourceWarning)
        gc.collect()
    dropped: list[str] = []
    for warning in caught:
        if issubclass(warning.category, ResourceWarning) and re.match(
            UNCLOSED_WARNING, str(warning.message), re.IGNORECASE
        ):
            dropped.append(str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return dropped


def describe_leaks(test: str, leaked: Iterable[TcpSocket], dropped: Iterable[str]) -> str:
    lines = [f"{test} leaked client TCP sockets, open {LEAK_TIMEOUT:g} s after its teardown:"]
    lines += [f"  {sock}" for sock in leaked]
    lines += [f"  then closed by the garbage collector, nobody else: {text}" for text in dropped]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plugin


def pytest_configure(config: pytest.Config) -> None:
    # When the collector runs in the middle of a test, the "unclosed" warning of a socket that
    # test dropped becomes an exception in a finaliser: pytest reports it as an unraisable
    # exception, which the project's ``filterwarnings`` makes an error of that test.
    warnings.filterwarnings("error", UNCLOSED_WARNING, ResourceWarning)


@pytest.fixture(autouse=True)
def _no_socket_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every client TCP socket a test opens is closed, by a close, before its teardown ends.

    Autouse, so pytest sets it up before the test's own function-scoped fixtures and tears it
    down after them: the check runs once the test's agents are closed and its event loop is gone.
    """
    marker = request.node.get_closest_marker("allow_socket_leak")
    if marker is not None:
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
        if not (isinstance(reason, str) and reason.strip()):
            pytest.fail("allow_socket_leak needs a reason: allow_socket_leak('why')", pytrace=False)
        yield
        return
    check = SocketLeakCheck()
    yield
    leaked = check.wait_for_no_leaks(timeout=LEAK_TIMEOUT)
    if leaked:
        # Some may be garbage nobody closed: collecting it now closes them and says which.
        dropped = collect_dropped_sockets()
        pytest.fail(describe_leaks(request.node.nodeid, leaked, dropped), pytrace=False)
