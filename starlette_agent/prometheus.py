"""Prometheus metrics for agents: what each one holds, per origin, and its running counters.

    from prometheus_client import REGISTRY
    from starlette_agent.prometheus import AgentCollector

    REGISTRY.register(AgentCollector(registry))  # an AgentRegistry, or {"name": agent}

Needs ``prometheus-client`` (``pip install starlette-agent[prometheus]``). The collector reads
``agent.stats()`` of every agent at each scrape; it keeps no state of its own and costs the
agents nothing between scrapes. A registry that is not open (no app using it has started) shows
no samples.

Metrics, with ``starlette_agent`` as the default namespace:

* ``starlette_agent_sockets{agent, origin, state}``: sockets held, ``state`` ``active``
  (carrying a request, or connecting) or ``idle``;
* ``starlette_agent_queued_requests{agent, origin}``: requests waiting for a socket;
* ``starlette_agent_requests_total{agent}``, ``..._errors_total``, ``..._retries_total``,
  ``..._connections_created_total``, ``..._connections_reused_total``,
  ``..._connections_closed_total``, ``..._idle_timeouts_total``: the agent's ``Counters``.

``origin`` is the pool key (``Agent.get_name()``): scheme, host, port, and the proxy, local
address and TLS identity when they apply, never credentials. An origin appears while the agent
holds sockets or queued requests for it. An app that calls hosts its users choose should pass
``per_origin=False``, which sums over origins, so that the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._agent import Agent
from ._registry import AgentRegistry
from ._setup_errors import AgentNotConfigured
from ._stats import AgentStats

__all__ = ["AgentCollector"]

_COUNTER_HELP = {
    "connections_created": "Sockets opened.",
    "connections_reused": "Requests sent on a socket kept from an earlier request.",
    "connections_closed": "Sockets closed.",
    "idle_timeouts": "Idle sockets closed when their idle time ran out.",
    "requests": "Requests sent (each call of dispatch).",
    "errors": "Requests that raised an AgentError.",
    "retries": "Requests sent again on a new socket after a reused one was found closed.",
}
# A scrape from another thread may meet a pool changing under it; it reads again.
_READ_ATTEMPTS = 3


class AgentCollector:
    """A Prometheus collector for the agents of an ``AgentRegistry`` (every name it defines),
    or of a mapping of names to agents; register it with a ``CollectorRegistry``."""

    def __init__(
        self,
        agents: AgentRegistry | Mapping[str, Agent],
        *,
        namespace: str = "starlette_agent",
        per_origin: bool = True,
    ) -> None:
        self._agents = agents
        self._namespace = namespace
        self._per_origin = per_origin

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (for the registry's name checks)."""
        sockets, queued, counters = self._families()
        return [sockets, queued, *counters]

    def collect(self) -> Iterable[Metric]:
        sockets, queued, counters = self._families()
        for name, stats in self._stats():
            if self._per_origin:
                for origin, held in stats.origins.items():
                    sockets.add_metric([name, origin, "active"], held.active)
                    sockets.add_metric([name, origin, "idle"], held.idle)
                    queued.add_metric([name, origin], held.queued)
            else:
                sockets.add_metric([name, "active"], stats.active)
                sockets.add_metric([name, "idle"], stats.idle)
                queued.add_metric([name], stats.queued)
            for family, field in zip(counters, _COUNTER_HELP, strict=True):
                family.add_metric([name], getattr(stats.counters, field))
        return [sockets, queued, *counters]

    def _families(
        self,
    ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, list[CounterMetricFamily]]:
        prefix = self._namespace
        where = ["agent", "origin"] if self._per_origin else ["agent"]
        sockets = GaugeMetricFamily(
            f"{prefix}_sockets",
            "Sockets an agent holds: active (carrying a request, or connecting) or idle.",
            labels=[*where, "state"],
        )
        queued = GaugeMetricFamily(
            f"{prefix}_queued_requests",
            "Requests waiting in an agent's queue for a socket.",
            labels=where,
        )
        counters = [
            CounterMetricFamily(f"{prefix}_{field}", text, labels=["agent"])
            for field, text in _COUNTER_HELP.items()
        ]
        return sockets, queued, counters

    def _stats(self) -> Iterator[tuple[str, AgentStats]]:
        for name, agent in self._open_agents():
            for attempt in range(_READ_ATTEMPTS):
                try:
                    stats = agent.stats()
                except RuntimeError:  # a dict changed size as another thread read it
                    if attempt + 1 == _READ_ATTEMPTS:
                        raise
                    continue
                yield name, stats
                break

    def _open_agents(self) -> list[tuple[str, Agent]]:
        source = self._agents
        if not isinstance(source, AgentRegistry):
            return list(source.items())
        try:
            return [(name, source.get(name)) for name in source.names]
        except AgentNotConfigured:
            return []  # not open: no app using it has started, or all have stopped
