"""What an agent holds and has done: the numbers to debug it by in production and in tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class OriginStats:
    """Sockets of one pool key. ``active`` counts sockets in use and ones still connecting."""

    active: int
    idle: int
    queued: int


@dataclass(slots=True)
class Counters:
    """Running totals since the agent was created."""

    connections_created: int = 0
    connections_reused: int = 0
    connections_closed: int = 0
    idle_timeouts: int = 0
    requests: int = 0
    errors: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class AgentStats:
    """A snapshot of an agent: sockets per origin (keyed by ``get_name``) and its counters.

    ``counters`` is a copy of the agent's running ``Counters`` taken with the snapshot; the
    properties ``requests``, ``errors``... read it, so ``stats.requests`` is
    ``stats.counters.requests``.
    """

    origins: Mapping[str, OriginStats] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    closed: bool = False

    @classmethod
    def snapshot(
        cls, counts: Mapping[str, tuple[int, int, int]], counters: Counters, *, closed: bool
    ) -> AgentStats:
        return cls(
            origins={key: OriginStats(*values) for key, values in counts.items()},
            counters=replace(counters),
            closed=closed,
        )

    @property
    def active(self) -> int:
        return sum(o.active for o in self.origins.values())

    @property
    def idle(self) -> int:
        return sum(o.idle for o in self.origins.values())

    @property
    def queued(self) -> int:
        return sum(o.queued for o in self.origins.values())

    @property
    def connections_created(self) -> int:
        return self.counters.connections_created

    @property
    def connections_reused(self) -> int:
        return self.counters.connections_reused

    @property
    def connections_closed(self) -> int:
        return self.counters.connections_closed

    @property
    def idle_timeouts(self) -> int:
        return self.counters.idle_timeouts

    @property
    def requests(self) -> int:
        return self.counters.requests

    @property
    def errors(self) -> int:
        return self.counters.errors

    @property
    def retries(self) -> int:
        return self.counters.retries

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts and ints, ready for ``json.dumps``: the totals, each origin, the counters
        (at the top level, as ``requests``, ``errors``...) and ``closed``."""
        return {
            "active": self.active,
            "idle": self.idle,
            "queued": self.queued,
            "origins": {key: asdict(value) for key, value in self.origins.items()},
            **asdict(self.counters),
            "closed": self.closed,
        }
