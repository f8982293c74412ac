"""What the pool's own bookkeeping costs per operation, as queues and origins grow.

The ``Pool`` is synchronous and does no I/O, so it is timed alone, with stand-in connections:
no sockets, no event loop. Each scenario builds a pool in a steady state, then times a cycle of
pool calls that leaves the pool as it found it. Reported: the median over ``--rounds`` rounds of
the time per cycle, in microseconds, and its ratio to the smallest size of the same scenario.

* ``idle reuse, others queued``: ``max_total_sockets`` is full and ``queued`` requests wait for
  100 origins already at their own ``max_sockets``. An origin nobody else waits for releases its
  socket (kept idle: no waiting origin has room for it) and acquires it again.
* ``grant across origins``: as above, but the socket is released as not reusable and closed;
  its slot goes to the one request whose origin has room, queued behind all the others, which
  connects; the released origin then queues a request for the next freed slot.
* ``one waiter per origin``: ``queued`` origins each have a request waiting for room overall;
  an origin nobody waits for releases its socket, which is closed so that its slot goes to the
  oldest of them; that request connects, and the released origin queues a new request.
* ``idle sockets``: ``origins`` origins each keep 4 idle sockets; a request takes an idle socket
  of the next origin, round robin, and gives it back (without limits, and with ``max_sockets=4``
  and a ``max_total_sockets`` that does not bind).
* ``reaper wake, nothing due``: what the idle reaper asks on waking (``expire``, then
  ``next_deadline``) with ``idle`` sockets kept, freed in turn with one keep-alive time.

    python -m benchmarks --only pool                   # as part of the benchmark page
    python -m benchmarks.pool [--rounds 7] [--seconds 0.2] [--only idle]

Not a test. Absolute times on shared machines are noise; read the ratios.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette_agent._pool import Pool, Reservation, Waiter

Cycle = Callable[[], None]


class Conn:
    __slots__ = ("idle_deadline", "pool_key")

    def __init__(self, key: str) -> None:
        self.pool_key = key
        self.idle_deadline = math.inf


def connect(pool: Pool[Conn], granted: object, key: str) -> Conn:
    assert isinstance(granted, Reservation), granted
    conn = Conn(key)
    assert pool.connected(granted, conn)
    return conn


def fill_with_full_origins(pool: Pool[Conn], queued: int, origins: int = 100) -> None:
    """``origins`` origins at their own limit of one socket, ``queued`` requests among them."""
    keys = [f"http://full-{index}.test" for index in range(origins)]
    for key in keys:
        connect(pool, pool.acquire(key), key)
    for index in range(queued):
        assert isinstance(pool.acquire(keys[index % origins]), Waiter)


def idle_reuse_with_others_queued(queued: int) -> Cycle:
    pool: Pool[Conn] = Pool(max_sockets=1, max_total_sockets=101)
    mine = "http://mine.test"
    conn = connect(pool, pool.acquire(mine), mine)
    fill_with_full_origins(pool, queued)

    def cycle() -> None:
        assert not pool.release(conn, reusable=True)
        assert pool.acquire(mine) is conn

    return cycle


def grant_across_origins(queued: int) -> Cycle:
    pool: Pool[Conn] = Pool(max_sockets=1, max_total_sockets=101)
    this, other = "http://roomy-0.test", "http://roomy-1.test"
    active = connect(pool, pool.acquire(this), this)
    fill_with_full_origins(pool, queued)
    waiting = pool.acquire(other)
    state = [active, waiting, this, other]

    def cycle() -> None:
        conn, waiter, released_key, waiter_key = state
        assert isinstance(conn, Conn) and isinstance(waiter, Waiter)
        assert isinstance(released_key, str) and isinstance(waiter_key, str)
        for closed in pool.release(conn, reusable=False):
            pool.close_done(closed)
        state[0] = connect(pool, waiter.grant, waiter_key)
        state[1] = pool.acquire(released_key)
        state[2], state[3] = waiter_key, released_key

    return cycle


def one_waiter_per_origin(queued: int) -> Cycle:
    slots = 100
    pool: Pool[Conn] = Pool(max_sockets=1, max_total_sockets=slots)
    keys = [f"http://origin-{index}.test" for index in range(slots + queued)]
    active: deque[Conn] = deque(connect(pool, pool.acquire(key), key) for key in keys[:slots])
    waiters: deque[Waiter[Conn]] = deque()
    for key in keys[slots:]:
        waiter = pool.acquire(key)
        assert isinstance(waiter, Waiter)
        waiters.append(waiter)

    def cycle() -> None:
        conn = active.popleft()
        for closed in pool.release(conn, reusable=True):
            pool.close_done(closed)
        waiter = waiters.popleft()
        active.append(connect(pool, waiter.grant, waiter.key))
        queued_again = pool.acquire(conn.pool_key)
        assert isinstance(queued_again, Waiter)
        waiters.append(queued_again)

    return cycle


def idle_sockets(origins: int, *, limited: bool) -> Cycle:
    per_origin = 4
    if limited:
        pool: Pool[Conn] = Pool(max_sockets=per_origin, max_total_sockets=2 * per_origin * origins)
    else:
        pool = Pool()
    keys = [f"http://origin-{index}.test" for index in range(origins)]
    for key in keys:
        conns = [connect(pool, pool.acquire(key), key) for _ in range(per_origin)]
        for conn in conns:
            assert not pool.release(conn, reusable=True)
    ring = deque(keys)

    def cycle() -> None:
        key = ring[0]
        ring.rotate(-1)
        conn = pool.acquire(key)
        assert isinstance(conn, Conn)
        pool.release(conn, reusable=True)

    return cycle


def calibrate(cycle: Cycle, seconds: float) -> int:
    """How many calls of ``cycle`` take about ``seconds``; warms it up on the way."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            cycle()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 10:
            return max(1, int(calls * seconds / elapsed))
        calls *= 2


def reaper_wake(idle: int) -> Cycle:
    pool: Pool[Conn] = Pool()
    keys = [f"http://origin-{n % 100}.test" for n in range(idle)]
    conns = [connect(pool, pool.acquire(key), key) for key in keys]
    for index, conn in enumerate(conns):
        conn.idle_deadline = 1000.0 + index  # freed in turn, each kept as long
        assert not pool.release(conn, reusable=True)

    def cycle() -> None:
        assert pool.expire(999.0) == []
        assert pool.next_deadline() == 1000.0

    return cycle


def time_per_cycle(cycle: Cycle, calls: int) -> float:
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(calls):
            cycle()
        return (time.perf_counter() - started) / calls
    finally:
        gc.enable()


SCENARIOS: list[tuple[str, str, list[int], Callable[[int], Cycle]]] = [
    ("idle reuse, others queued", "queued", [10, 100, 1000, 10000], idle_reuse_with_others_queued),
    ("grant across origins", "queued", [10, 100, 1000, 10000], grant_across_origins),
    ("one waiter per origin", "queued", [10, 100, 1000, 10000], one_waiter_per_origin),
    (
        "idle sockets, no limits",
        "origins",
        [1, 10, 1000],
        lambda origins: idle_sockets(origins, limited=False),
    ),
    (
        "idle sockets, limits",
        "origins",
        [1, 10, 1000],
        lambda origins: idle_sockets(origins, limited=True),
    ),
    ("reaper wake, nothing due", "idle", [10, 1000, 10000], reaper_wake),
]


def measure(
    rounds: int, seconds: float, only: str = "", log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every scenario's median time per cycle at each size, and its ratio to the smallest."""
    scenarios = []
    for name, unit, sizes, build in SCENARIOS:
        if only not in name:
            continue
        cycles = [build(size) for size in sizes]
        calls = [calibrate(cycle, seconds) for cycle in cycles]
        samples: list[list[float]] = [[] for _ in sizes]
        for _ in range(rounds):  # sizes take turns, so drift on the machine hits all alike
            for index, cycle in enumerate(cycles):
                samples[index].append(time_per_cycle(cycle, calls[index]) * 1e6)
        medians = [statistics.median(times) for times in samples]
        scenarios.append(
            {
                "name": name,
                "unit": unit,
                "sizes": sizes,
                "us": medians,
                "ratios": [median / medians[0] for median in medians],
                "us_rounds": samples,
            }
        )
        log(
            f"  {name}: "
            + ", ".join(
                f"{size:,} {unit} {us:.2f} us" for size, us in zip(sizes, medians, strict=True)
            )
        )
    return {"scenarios": scenarios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2, help="length of one round")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    print(f"median of {args.rounds} rounds, us per cycle (ratio to the smallest size)")
    print(f"{'scenario':28s} {'size':>14s} {'us':>9s} {'ratio':>7s}")
    for scenario in measure(args.rounds, args.seconds, args.only, log=lambda line: None)[
        "scenarios"
    ]:
        for size, us, ratio in zip(
            scenario["sizes"], scenario["us"], scenario["ratios"], strict=True
        ):
            label = f"{size:,} {scenario['unit']}"
            print(f"{scenario['name']:28s} {label:>14s} {us:9.2f} {ratio:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
