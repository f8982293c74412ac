"""AgentStats: a snapshot holding the agent's counters, and its plain-dict form."""

from __future__ import annotations

import json

from starlette_agent import AgentStats, Counters, OriginStats


def test_stats_hold_a_snapshot_of_the_counters() -> None:
    live = Counters(connections_created=2, connections_reused=5, requests=7, errors=1)
    stats = AgentStats.snapshot({"http://a:1": (1, 1, 0)}, live, closed=False)
    assert stats.counters == live and stats.counters is not live
    live.requests += 1  # the agent goes on counting; the snapshot does not move
    assert stats.counters.requests == 7
    # The totals read the snapshot: stats.requests is stats.counters.requests.
    assert (stats.requests, stats.errors, stats.connections_reused) == (7, 1, 5)
    assert stats.origins == {"http://a:1": OriginStats(active=1, idle=1, queued=0)}


def test_as_dict_keeps_its_flat_shape() -> None:
    counters = Counters(*range(1, 8))
    stats = AgentStats.snapshot({"k": (2, 3, 4)}, counters, closed=True)
    assert stats.as_dict() == {
        "active": 2,
        "idle": 3,
        "queued": 4,
        "origins": {"k": {"active": 2, "idle": 3, "queued": 4}},
        "connections_created": 1,
        "connections_reused": 2,
        "connections_closed": 3,
        "idle_timeouts": 4,
        "requests": 5,
        "errors": 6,
        "retries": 7,
        "closed": True,
    }
    assert list(stats.as_dict()) == [
        "active",
        "idle",
        "queued",
        "origins",
        "connections_created",
        "connections_reused",
        "connections_closed",
        "idle_timeouts",
        "requests",
        "errors",
        "retries",
        "closed",
    ]
    assert json.loads(json.dumps(stats.as_dict())) == stats.as_dict()


def test_every_counter_reads_through_the_snapshot() -> None:
    names = list(Counters.__dataclass_fields__)
    stats = AgentStats(counters=Counters(*range(10, 10 + len(names))))
    assert [getattr(stats, name) for name in names] == list(range(10, 10 + len(names)))
