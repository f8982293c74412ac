"""What an agent holds and has done: the numbers to debug it by in production and in tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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
    """A snapshot of an agent: sockets per origin (keyed by ``get_name``) and counters."""

    origins: Mapping[str, OriginStats] = field(default_factory=dict)
    connections_created: int = 0
    connections_reused: int = 0
    connections_closed: int = 0
    idle_timeouts: int = 0
    requests: int = 0
    errors: int = 0
    retries: int = 0
    closed: bool = False

    @classmethod
    def snapshot(
        cls, counts: Mapping[str, tuple[int, int, int]], counters: Counters, *, closed: bool
    ) -> AgentStats:
        return cls(
            origins={key: OriginStats(*values) for key, values in counts.items()},
            closed=closed,
            **asdict(counters),
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

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts and ints, ready for ``json.dumps``."""
        result: dict[str, Any] = {
            "active": self.active,
            "idle": self.idle,
            "queued": self.queued,
            "origins": {key: asdict(value) for key, value in self.origins.items()},
        }
        for name in Counters.__dataclass_fields__:
            result[name] = getattr(self, name)
        result["closed"] = self.closed
        return result
