"""Load and soak runs, each in two sizes: a small one that CI runs, and the full one behind
``-m soak`` (``pytest -m soak -s`` prints the figures docs/reliability.md quotes).

Every run is bounded in requests and time and stays on 127.0.0.1. Each checks what the server
saw (connections open at once, requests in flight), that every caller got its own whole answer,
and that the process ends with the client sockets it started with and about the same memory.
"""

from __future__ import annotations

import os
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream
from faults import closes_when_idle
from helpers import assert_pool_works, assert_settled
from servers import (
    RawConnection,
    RawHandler,
    RawServer,
    ServerStats,
    TLSFiles,
    UvicornServer,
    peer_left,
    response_bytes,
    wait_until,
)
from socket_leaks import SocketLeakCheck

from starlette_agent import Agent, AgentError

pytestmark = pytest.mark.anyio

MAX_SOCKETS = 20
# Growth of the resident set allowed over a run, after a warm-up that fills the agent's caches.
RSS_MARGIN_KIB = 8 * 1024


# --------------------------------------------------------------------------- process figures


def socket_fds() -> int:
    """Socket descriptors this process holds, client and server side (the servers run here)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # closed since the listing
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


def resident_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Figures:
    """What a run cost the process and what the server saw; printed as one line per run.

    Client sockets are this process's TCP sockets that are not server-side (``socket_leaks``):
    counted when the run starts, when the load ends (the agent's idle pool), and once the agent
    is closed (none may be left). Socket descriptors count both sides, as the servers run here.
    """

    name: str
    started: float = 0.0
    client_sockets: SocketLeakCheck = field(default_factory=SocketLeakCheck)
    fds_start: int = field(default_factory=socket_fds)
    rss_start: int = 0
    requests: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clients_start = len(self.client_sockets.client_sockets())

    def start(self) -> None:
        """The warm-up is over (the agent's caches are full): the measured run starts now."""
        self.rss_start = resident_kib()
        self.started = time.monotonic()

    def measured(self) -> None:
        """The load is over (the agent still open): take the time and its sockets now."""
        self.seconds = time.monotonic() - self.started
        self.clients_loaded = len(self.client_sockets.leaked())

    def ended(self) -> None:
        """The agent is closed and the server saw every close: take the process's figures."""
        self.rss_end = resident_kib()
        self.fds_end = socket_fds()
        self.clients_left = self.client_sockets.leaked()
        rate = self.requests / self.seconds
        extra = " ".join(f"{key}={value}" for key, value in self.extra.items())
        print(
            f"\nSOAK {self.name}: {self.requests} requests in {self.seconds:.1f} s "
            f"({rate:.0f}/s) {extra} client sockets {self.clients_start}->"
            f"{self.clients_start + self.clients_loaded}->"
            f"{self.clients_start + len(self.clients_left)} socket fds "
            f"{self.fds_start}->{self.fds_end} RSS {self.rss_start / 1024:.1f}->"
            f"{self.rss_end / 1024:.1f} MiB"
        )

    def assert_process_whole(self) -> None:
        assert self.clients_loaded <= MAX_SOCKETS
        assert self.clients_left == []
        assert self.fds_end <= self.fds_start, (self.fds_start, self.fds_end)
        assert self.rss_end - self.rss_start <= RSS_MARGIN_KIB, (self.rss_start, self.rss_end)


@contextmanager
def quiet_counting(*stats: ServerStats) -> Iterator[None]:
    """Servers count, but keep no per-request log: the lists would grow with every request."""
    for each in stats:
        each.log_requests = False
    try:
        yield
    finally:
        for each in stats:
            each.log_requests = True


@dataclass
class Tally:
    ok: int = 0
    wrong: int = 0  # an answer that was not this caller's, or not whole
    errors: list[AgentError] = field(default_factory=list)


async def own_answers(
    agent: Agent, url_for: Callable[[int], str], ids: range, tasks: int, tally: Tally
) -> None:
    """GET ``url_for(i)`` for each ``i`` in ``ids``, ``tasks`` at a time; the answer to each must
    be ``i`` itself (so a body delivered short, or to another caller, is counted)."""
    remaining = iter(ids)

    async def worker() -> None:
        for index in remaining:
            try:
                response = await agent.get(url_for(index))
            except AgentError as exc:
                tally.errors.append(exc)
                continue
            if (response.status, response.content) == (200, str(index).encode()):
                tally.ok += 1
            else:
                tally.wrong += 1

    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(worker)


# --------------------------------------------------------------------------- a bounded pool


@dataclass(frozen=True)
class Load:
    requests: int
    tasks: int


# Requests to distinct URLs before memory is measured: they fill the agent's URL cache (512).
WARM_UP = 600


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(Load(3_000, 200), id="ci"),
        pytest.param(Load(100_000, 200), id="full", marks=pytest.mark.soak),
    ],
)
async def test_a_bounded_pool_under_load(
    server: UvicornServer, load: Load, request: pytest.FixtureRequest
) -> None:
    figures = Figures(f"load[{request.node.callspec.id}]")
    tally = Tally()

    def url(index: int) -> str:
        return f"{server.url}/id/{index}?delay=0"

    with quiet_counting(server.stats), anyio.fail_after(600):
        async with Agent(max_sockets=MAX_SOCKETS) as agent:
            await own_answers(agent, url, range(-WARM_UP, 0), load.tasks, tally)
            figures.start()
            await own_answers(agent, url, range(load.requests), load.tasks, tally)
            figures.measured()
            assert_settled(agent)
            stats = agent.stats()
            assert stats.active + stats.idle <= MAX_SOCKETS
        figures.requests = load.requests
        figures.extra = {
            "errors": len(tally.errors),
            "wrong": tally.wrong,
            "server_max_open": server.stats.max_open,
            "server_max_in_flight": server.stats.max_in_flight,
            "connections": server.stats.opened,
        }
        assert await wait_until(lambda: server.stats.open == 0)
        figures.ended()

    assert tally.errors == []
    assert tally.wrong == 0
    assert tally.ok == WARM_UP + load.requests
    assert server.stats.requests == WARM_UP + load.requests
    assert server.stats.max_open <= MAX_SOCKETS
    assert server.stats.max_in_flight <= MAX_SOCKETS
    figures.assert_process_whole()


# --------------------------------------------------------------------------- idle closes

IDLE_CLOSE_AFTER = 0.5


@dataclass(frozen=True)
class Waves:
    """Bursts of requests, each followed by a pause about as long as the server's idle limit:
    when the next burst starts, some idle sockets are closed, some are being closed."""

    waves: int
    requests: int  # per wave
    tasks: int


@pytest.mark.parametrize(
    "waves",
    [
        pytest.param(Waves(4, 150, 50), id="ci"),
        pytest.param(Waves(50, 2_000, 200), id="full", marks=pytest.mark.soak),
    ],
)
async def test_a_server_closing_idle_sockets_every_half_second(
    raw_server: RawServer, waves: Waves, request: pytest.FixtureRequest
) -> None:
    raw_server.handler = closes_when_idle(
        IDLE_CLOSE_AFTER, answer=lambda request: response_bytes(request.target[4:].encode())
    )
    figures = Figures(f"idle-close[{request.node.callspec.id}]")
    tally = Tally()
    rng = random.Random(2024)
    total = waves.waves * waves.requests

    def url(index: int) -> str:
        return f"{raw_server.url}/id/{index}"

    with quiet_counting(raw_server.stats), anyio.fail_after(900):
        async with Agent(max_sockets=MAX_SOCKETS, idle_timeout=30) as agent:
            await own_answers(agent, url, range(-WARM_UP, 0), waves.tasks, tally)
            figures.start()
            for wave in range(waves.waves):
                await anyio.sleep(rng.uniform(IDLE_CLOSE_AFTER - 0.05, IDLE_CLOSE_AFTER + 0.05))
                ids = range(wave * waves.requests, (wave + 1) * waves.requests)
                await own_answers(agent, url, ids, waves.tasks, tally)
            figures.measured()
            assert_settled(agent)
            stats = agent.stats()
        figures.requests = total
        figures.extra = {
            "errors": len(tally.errors),
            "wrong": tally.wrong,
            "server_max_open": raw_server.stats.max_open,
            "server_max_client_open": raw_server.stats.max_client_open,
            "connections": raw_server.stats.opened,
            "retries": stats.retries,
        }
        assert await wait_until(lambda: raw_server.stats.open == 0)
        figures.ended()

    assert tally.errors == []  # every request was a GET: none may fail
    assert tally.wrong == 0
    assert tally.ok == WARM_UP + total
    # What the client had open, read from the kernel at each accept: the server's own count lags
    # when it closes a socket and accepts the replacement before its handler has finished.
    assert raw_server.stats.max_client_open <= MAX_SOCKETS
    # The server did close idle sockets under the agent: it had to open new ones.
    assert raw_server.stats.opened > MAX_SOCKETS
    figures.assert_process_whole()


# --------------------------------------------------------------------------- cancellations

# How long the server stalls each phase of a doomed request, so that a cancellation can land in
# it: the TLS handshake of a new socket, the request body (the client's own stall), the response
# head, the response body.
PHASE_DELAY = 0.02
PHASES = ("connect", "write", "head", "body")


@dataclass(frozen=True)
class Cancellations:
    cancellations: int
    doomed_tasks: int  # cancelled requests in flight at once
    healthy_tasks: int  # tasks whose requests must all succeed meanwhile
    # Longest pause of a healthy task between requests: the healthy load must leave sockets
    # free, or doomed requests would all be cancelled waiting in the queue.
    healthy_pause: float


async def _client_left_within(conn: RawConnection, seconds: float) -> bool:
    """Wait ``seconds`` for the client to go, reading whatever it sends meanwhile."""
    with anyio.move_on_after(seconds):
        return not await conn.wait_readable()
    return False


def phased_server(context: ssl.SSLContext, hits: Counter[str]) -> RawHandler:
    """A TLS server that stalls each phase of ``/doomed/`` requests by ``PHASE_DELAY`` and counts,
    in ``hits``, the phase each client left in. Other requests get their path back at once."""

    async def handler(conn: RawConnection) -> None:
        raw = conn.stream.extra(SocketAttribute.raw_socket)
        deadline = time.monotonic() + PHASE_DELAY
        while time.monotonic() < deadline:  # the handshake waits; a client may give up
            if peer_left(raw):
                hits["connect"] += 1
                return
            await anyio.sleep(0.001)
        try:
            conn.stream = await TLSStream.wrap(
                conn.stream, server_side=True, ssl_context=context, standard_compatible=False
            )
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
            hits["connect"] += 1
            return
        while (request := await conn.read_request()) is not None:
            if not request.target.startswith("/doomed/"):
                await conn.send(response_bytes(request.target[4:].encode()))
                continue
            if request.body != b"ab":  # the client left while sending its body
                hits["write"] += 1
                return
            if await _client_left_within(conn, PHASE_DELAY):
                hits["head"] += 1
                return
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nha")
            if await _client_left_within(conn, PHASE_DELAY):
                hits["body"] += 1
                return
            await conn.send(b"lf")
        if conn.requests == 0 and not conn.pending:
            hits["connect"] += 1  # left once the handshake was done, before a byte of request

    return handler


async def _slow_body() -> AsyncIterator[bytes]:
    yield b"a"
    await anyio.sleep(PHASE_DELAY)
    yield b"b"


class Churn:
    """Doomed requests cancelled at random, beside healthy tasks whose requests must all succeed.

    ``hits`` is the server's count of the phase each doomed client left in; ``outcomes`` the
    client's count of cancelled and completed doomed requests."""

    def __init__(self, agent: Agent, origin: str, size: Cancellations, hits: Counter[str]) -> None:
        self.agent = agent
        self.origin = origin
        self.size = size
        self.hits = hits
        self.rng = random.Random(4321)
        self.ids = iter(range(10**9))
        self.clear()

    def clear(self) -> None:
        self.hits.clear()
        self.outcomes: Counter[str] = Counter()
        self.tally = Tally()
        self.healthy_answers: list[int] = []

    async def run(self, cancellations: int) -> None:
        """Until ``cancellations`` doomed requests were cancelled."""
        doomed_done = anyio.Event()

        async def all_doomed() -> None:
            async with anyio.create_task_group() as group:
                for _ in range(self.size.doomed_tasks):
                    group.start_soon(self._doomed, cancellations)
            doomed_done.set()

        async with anyio.create_task_group() as group:
            for _ in range(self.size.healthy_tasks):
                group.start_soon(self._healthy, doomed_done)
            group.start_soon(all_doomed)

    async def _doomed(self, cancellations: int) -> None:
        while self.outcomes["cancelled"] < cancellations:
            url = f"{self.origin}/doomed/{next(self.ids)}"
            with anyio.CancelScope(
                deadline=anyio.current_time() + self.rng.uniform(0, 0.1)
            ) as scope:
                try:
                    await self.agent.post(url, content=_slow_body())
                    self.outcomes["completed"] += 1
                except AgentError as exc:
                    self.tally.errors.append(exc)
            if scope.cancelled_caught:
                self.outcomes["cancelled"] += 1

    async def _healthy(self, doomed_done: anyio.Event) -> None:
        slot = len(self.healthy_answers)
        self.healthy_answers.append(0)
        while not doomed_done.is_set():
            index = next(self.ids)
            try:
                response = await self.agent.get(f"{self.origin}/id/{index}")
            except AgentError as exc:
                self.tally.errors.append(exc)
                continue
            if (response.status, response.content) == (200, str(index).encode()):
                self.tally.ok += 1
                self.healthy_answers[slot] += 1
            else:
                self.tally.wrong += 1
            await anyio.sleep(self.rng.uniform(0, self.size.healthy_pause))


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(Cancellations(100, 5, 20, healthy_pause=0.1), id="ci"),
        pytest.param(
            Cancellations(1_000, 8, 100, healthy_pause=1.0), id="full", marks=pytest.mark.soak
        ),
    ],
)
async def test_random_cancellations_beside_healthy_requests(
    raw_server: RawServer, tls: TLSFiles, size: Cancellations, request: pytest.FixtureRequest
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls.certfile, tls.keyfile)
    hits: Counter[str] = Counter()
    raw_server.handler = phased_server(server_context, hits)
    origin = f"https://127.0.0.1:{raw_server.port}"
    figures = Figures(f"cancellations[{request.node.callspec.id}]")

    with quiet_counting(raw_server.stats), anyio.fail_after(600):
        async with Agent(max_sockets=MAX_SOCKETS, ssl_context=tls.client_context()) as agent:
            churn = Churn(agent, origin, size, hits)
            # The warm-up is the same churn, smaller: the first run of the cancellation paths
            # grows the heap once (by about 14 MiB on asyncio), later runs hardly at all.
            await churn.run(size.cancellations // 5)
            churn.clear()
            figures.start()
            await churn.run(size.cancellations)
            figures.measured()
            assert_settled(agent)
            # The pool is whole: it still serves a burst at full width.
            burst = Tally()
            await own_answers(agent, lambda index: f"{origin}/id/{index}", range(200), 50, burst)
            assert (burst.ok, burst.wrong, burst.errors) == (200, 0, [])
            stats = agent.stats()
            assert stats.active + stats.idle <= MAX_SOCKETS
        outcomes, tally = churn.outcomes, churn.tally
        figures.requests = tally.ok + sum(outcomes.values())
        seen = sum(hits[phase] for phase in PHASES)
        figures.extra = {
            "cancelled": outcomes["cancelled"],
            **{f"in_{phase}": hits[phase] for phase in PHASES},
            "queued_or_between": outcomes["cancelled"] - seen,
            "healthy_ok": tally.ok,
            "errors": len(tally.errors),
            "server_max_open": raw_server.stats.max_open,
            "server_max_client_open": raw_server.stats.max_client_open,
        }
        assert await wait_until(lambda: raw_server.stats.open == 0)
        figures.ended()

    assert tally.errors == []
    assert tally.wrong == 0
    assert len(churn.healthy_answers) == size.healthy_tasks
    assert min(churn.healthy_answers) > 0  # every healthy task got answers all along
    assert outcomes["cancelled"] >= size.cancellations
    # The server can only have seen clients leave that were cancelled.
    assert seen <= outcomes["cancelled"]
    assert seen > 0
    if size.cancellations >= 1_000:  # enough for every phase to be hit, whatever the timing
        assert all(hits[phase] > 0 for phase in PHASES), hits
    # Counted from the kernel at each accept: a reset the server has not yet got round to
    # noticing does not count as open (server_max_open, which counts it, is printed above).
    assert raw_server.stats.max_client_open <= MAX_SOCKETS
    figures.assert_process_whole()


# --------------------------------------------------------------------------- older soaks


@pytest.mark.soak
async def test_soak_cancellations_and_timeouts_under_load(server: UvicornServer) -> None:
    rng = random.Random(1234)
    async with Agent(max_sockets=8, read_timeout=0.05) as agent:
        most_sockets = 0
        outcomes = {"ok": 0, "cancelled": 0, "error": 0}

        async def one(delay: float, slow: float) -> None:
            nonlocal most_sockets
            with anyio.move_on_after(delay) as scope:
                try:
                    await agent.get(f"{server.url}/slow?delay={slow}")
                    outcomes["ok"] += 1
                except AgentError:
                    outcomes["error"] += 1
            if scope.cancelled_caught:
                outcomes["cancelled"] += 1
            stats = agent.stats()
            most_sockets = max(most_sockets, stats.active + stats.idle)

        for _ in range(20):
            async with anyio.create_task_group() as tg:
                for _ in range(500):
                    tg.start_soon(one, rng.uniform(0, 0.1), rng.choice([0, 0.001, 0.1]))
            assert_settled(agent)
        assert most_sockets <= 8
        assert outcomes["ok"] > 0 and outcomes["cancelled"] > 0
        await assert_pool_works(
            agent, f"{server.url}/peer", count=10_000, concurrency=100, timeout=10
        )


@pytest.mark.soak
async def test_soak_many_origins_under_a_total_limit(
    server: UvicornServer, server2: UvicornServer
) -> None:
    combined = ServerStats()
    server.stats.link(combined)
    server2.stats.link(combined)
    async with Agent(max_total_sockets=6, max_sockets=4) as agent:
        rng = random.Random(99)
        urls = [f"{server.url}/peer", f"{server2.url}/peer", f"{server.url}/slow?delay=0.005"]

        async def one() -> None:
            assert (await agent.get(rng.choice(urls))).status == 200

        with anyio.fail_after(300):
            for _ in range(20):
                async with anyio.create_task_group() as tg:
                    for _ in range(1000):
                        tg.start_soon(one)
        assert_settled(agent)
        assert server.stats.requests + server2.stats.requests == 20_000
        assert combined.max_in_flight <= 6
        assert server.stats.max_in_flight <= 4
        assert server2.stats.max_in_flight <= 4
        assert agent.stats().idle <= 6
