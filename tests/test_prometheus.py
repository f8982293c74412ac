"""``starlette_agent.prometheus``: a real prometheus_client scrape, parsed back with its own
parser and checked against ``stats()`` after requests to real servers."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from proxies import TinyproxyServer
from servers import UvicornServer, wait_until

from starlette_agent import Agent, AgentOptions, AgentRegistry, Counters
from starlette_agent.prometheus import AgentCollector

pytestmark = pytest.mark.anyio

COUNTERS = [field.name for field in fields(Counters)]


def scrape(collector: AgentCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from the text a scrape returns."""
    metrics = CollectorRegistry()
    metrics.register(collector)
    text = generate_latest(metrics).decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


async def test_a_scrape_shows_every_agent_per_origin_as_stats_does(
    server: UvicornServer, server2: UvicornServer
) -> None:
    registry = AgentRegistry({"default": {}, "payments": AgentOptions(max_sockets=1)})
    collector = AgentCollector(registry)
    async with registry, anyio.create_task_group() as tg:
        default, payments = registry.get("default"), registry.get("payments")
        for _ in range(3):
            await default.get(f"{server.url}/peer")
        await default.get(f"{server2.url}/status/500")
        held = await payments.dispatch(payments.build_request("GET", f"{server.url}/stream/1"))
        tg.start_soon(payments.get, f"{server.url}/peer")  # waits for the one socket
        await wait_until(lambda: payments.stats().queued == 1)

        scraped = scrape(collector)
        checked = 0
        for name, agent in (("default", default), ("payments", payments)):
            stats = agent.stats()
            for origin, held_there in stats.origins.items():
                for state in ("active", "idle"):
                    key = labels(agent=name, origin=origin, state=state)
                    assert scraped["starlette_agent_sockets"][key] == getattr(held_there, state)
                key = labels(agent=name, origin=origin)
                assert scraped["starlette_agent_queued_requests"][key] == held_there.queued
                checked += 1
            for counter in COUNTERS:
                value = scraped[f"starlette_agent_{counter}_total"][labels(agent=name)]
                assert value == getattr(stats.counters, counter), counter
        assert checked == 3  # default: two origins; payments: one
        sockets = scraped["starlette_agent_sockets"]
        assert (
            sockets[labels(agent="payments", origin=payments.get_name(server.url), state="active")]
            == 1
        )
        assert (
            sockets[labels(agent="default", origin=default.get_name(server.url), state="idle")] == 1
        )
        assert scraped["starlette_agent_requests_total"][labels(agent="default")] == 4
        assert (
            scraped["starlette_agent_queued_requests"][
                labels(agent="payments", origin=payments.get_name(server.url))
            ]
            == 1
        )
        await held.aread()


async def test_summed_over_origins(server: UvicornServer, server2: UvicornServer) -> None:
    async with Agent() as agent:
        await agent.get(f"{server.url}/peer")
        await agent.get(f"{server2.url}/peer")
        scraped = scrape(AgentCollector({"api": agent}, per_origin=False, namespace="app_http"))
    assert scraped["app_http_sockets"] == {
        labels(agent="api", state="active"): 0,
        labels(agent="api", state="idle"): 2,
    }
    assert scraped["app_http_queued_requests"] == {labels(agent="api"): 0}
    assert scraped["app_http_connections_created_total"] == {labels(agent="api"): 2}


def test_a_registry_not_open_shows_no_samples() -> None:
    scraped = scrape(AgentCollector(AgentRegistry()))
    assert scraped == {}


async def test_proxy_credentials_never_reach_a_label(
    auth_proxy_server: TinyproxyServer, server: UvicornServer
) -> None:
    async with Agent(proxy=auth_proxy_server.url) as agent:
        assert (await agent.get(f"{server.url}/peer")).status == 200
        metrics = CollectorRegistry()
        metrics.register(AgentCollector({"default": agent}))
        text = generate_latest(metrics).decode()
    assert "s3cret" not in text and "alice" not in text
    origins = {
        sample.labels["origin"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "origin" in sample.labels
    }
    assert origins == {f"{server.url};proxy=http://127.0.0.1:{auth_proxy_server.port}"}


def test_every_counter_has_a_metric() -> None:
    families: Any = AgentCollector(AgentRegistry()).describe()
    names = {family.name for family in families}
    assert {f"starlette_agent_{counter}" for counter in COUNTERS} <= names
