"""What a benchmark run measures, and how many times: the full, quick and smoke plans."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .upstream import BODIES, path_for

KEEP_ALIVE = "keep-alive"
NEW_CONNECTION = "new connection"
BODY_LABELS = {"small": "2-byte body", "large": "1 MiB body"}


@dataclass(frozen=True)
class Run:
    """One configuration of the client matrix, which every client runs once per round."""

    mode: str  # KEEP_ALIVE or NEW_CONNECTION
    body: str  # "small" or "large"
    concurrency: int
    loop: str  # "asyncio" or "uvloop"
    requests: int
    warmup: int

    @property
    def id(self) -> str:
        mode = "keepalive" if self.mode == KEEP_ALIVE else "newconn"
        return f"{mode}-{self.body}-c{self.concurrency}-{self.loop}"

    @property
    def path(self) -> str:
        return path_for(self.body, close=self.mode == NEW_CONNECTION)

    @property
    def body_size(self) -> int:
        return len(BODIES[self.body])


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    concurrency: tuple[int, ...] = (1, 10, 100)
    modes: tuple[str, ...] = (KEEP_ALIVE, NEW_CONNECTION)
    bodies: tuple[str, ...] = ("small", "large")
    loops: tuple[str, ...] = ("asyncio", "uvloop")
    # Timed requests of one client in one round, by (mode, body); at least ``per_task`` for each
    # request in flight, so that C=100 runs are not mostly ramp-up and tail.
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    per_task: int = 5
    warmup: int = 20  # and at least one per request in flight, to open the keep-alive sockets
    pool_rounds: int = 7
    pool_seconds: float = 0.2
    memory_sockets: int = 256  # as many as an agent keeps idle per origin by default
    memory_queued: int = 1000
    memory_ways: tuple[str, ...] = ("tracemalloc", "rss")
    middleware_requests: int = 20_000
    middleware_uvicorn_requests: int = 5_000
    middleware_rounds: int = 15
    profile_requests: int = 3000
    hooks_requests: int = 3000
    hooks_rounds: int = 7

    def runs(self) -> list[Run]:
        return [
            Run(
                mode,
                body,
                concurrency,
                loop,
                requests=max(self.requests[mode, body], self.per_task * concurrency),
                warmup=max(self.warmup, concurrency) if self.warmup else 0,
            )
            for loop in self.loops
            for mode in self.modes
            for body in self.bodies
            for concurrency in self.concurrency
        ]

    def describe(self) -> dict[str, Any]:
        described = asdict(self)
        described["requests"] = {f"{mode}, {body}": n for (mode, body), n in self.requests.items()}
        return described


FULL = Plan(
    name="full",
    rounds=7,
    requests={
        (KEEP_ALIVE, "small"): 2000,
        (NEW_CONNECTION, "small"): 500,
        (KEEP_ALIVE, "large"): 200,
        (NEW_CONNECTION, "large"): 200,
    },
)

QUICK = Plan(
    name="quick",
    rounds=3,
    modes=(KEEP_ALIVE,),
    bodies=("small",),
    loops=("asyncio",),
    requests={(KEEP_ALIVE, "small"): 250},
    per_task=3,
    pool_rounds=3,
    pool_seconds=0.03,
    memory_sockets=100,
    memory_queued=200,
    memory_ways=("tracemalloc",),
    middleware_requests=2000,
    middleware_uvicorn_requests=0,  # skipped: two uvicorn processes take seconds to start
    middleware_rounds=5,
    profile_requests=500,
    hooks_requests=500,
    hooks_rounds=3,
)

# Every configuration with tiny counts: proves the harness runs end to end, measures nothing.
SMOKE = Plan(
    name="smoke",
    rounds=1,
    requests={(mode, body): 3 for mode in (KEEP_ALIVE, NEW_CONNECTION) for body in BODIES},
    per_task=0,
    warmup=0,
    pool_rounds=1,
    pool_seconds=0.001,
    memory_sockets=4,
    memory_queued=4,
    memory_ways=("tracemalloc",),
    middleware_requests=20,
    middleware_uvicorn_requests=20,
    middleware_rounds=1,
    profile_requests=20,
    hooks_requests=20,
    hooks_rounds=1,
)

PLANS = {plan.name: plan for plan in (FULL, QUICK, SMOKE)}


def with_rounds(plan: Plan, rounds: int | None) -> Plan:
    return plan if rounds is None else replace(plan, rounds=rounds)
