"""What trace hooks cost the agent: client CPU per request without hooks, with hooks that do
nothing, and with ``OpenTelemetryHooks`` on the API alone and on the SDK.

Small keep-alive GETs, one at a time on asyncio, from a process of its own against the
upstream. The configurations, by key:

* ``none``: ``Agent()``, no hooks;
* ``noop``: every hook implemented, each doing nothing: what calling hooks costs;
* ``otel-api``: ``OpenTelemetryHooks()`` with no SDK configured (the API's no-op tracer and
  meter), as a library that ships the instrumentation to applications that may not use it;
* ``otel-sdk``: ``OpenTelemetryHooks`` on the SDK, every span sampled and batched to an exporter
  that drops it, every metric aggregated in memory.

A round runs every configuration once, each with a new agent, after a warm-up; the hooks objects
(and the SDK's providers) live across rounds, as they do in an application. Reported: the median
over rounds of the CPU time per request (``time.process_time()``: the SDK's export thread counts
too) and the median over rounds of its ratio to ``none`` in the same round.

    python -m benchmarks --only hooks                         # onto the benchmark page
    python -m benchmarks.hooks BASE_URL REQUESTS ROUNDS       # JSON on stdout
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .clients import Client, agent_session
from .session import Unavailable
from .upstream import ROOT, SMALL_BODY, path_for
from .worker import measure as measure_session

Log = Callable[[str], None]
Finish = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Config:
    name: str  # the key in the results
    label: str  # what the page calls it
    #: -> (the hooks, or None; what shuts them down at the end and says what they recorded)
    make: Callable[[], tuple[Any, Finish]]


def _nothing() -> dict[str, Any]:
    return {}


def no_hooks() -> tuple[Any, Finish]:
    return None, _nothing


def noop_hooks() -> tuple[Any, Finish]:
    """Every hook overridden by one that returns at once: the cost of the machinery itself."""
    from starlette_agent import AgentHooks
    from starlette_agent._hooks import HOOK_NAMES

    async def nothing(self: object, event: object) -> None:
        return None

    noop = type("NoopHooks", (AgentHooks,), dict.fromkeys(HOOK_NAMES, nothing))
    return noop(), _nothing


def otel_api_hooks() -> tuple[Any, Finish]:
    try:
        from starlette_agent.opentelemetry import OpenTelemetryHooks
    except ImportError as exc:
        raise Unavailable("opentelemetry-api is not installed") from exc
    return OpenTelemetryHooks(), _nothing


def otel_sdk_hooks() -> tuple[Any, Finish]:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from starlette_agent.opentelemetry import OpenTelemetryHooks
    except ImportError as exc:
        raise Unavailable("opentelemetry-sdk is not installed") from exc

    class Drop(SpanExporter):
        exported = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            Drop.exported += len(spans)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def finish() -> dict[str, Any]:
        tracer_provider.shutdown()  # exports what the batch still holds
        meter_provider.shutdown()
        return {"spans_exported": Drop.exported}

    hooks = OpenTelemetryHooks(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return hooks, finish


CONFIGS = (
    Config("none", "no hooks", no_hooks),
    Config("noop", "hooks that do nothing (all ten)", noop_hooks),
    Config("otel-api", "OpenTelemetryHooks, API only (no SDK)", otel_api_hooks),
    Config("otel-sdk", "OpenTelemetryHooks on the SDK", otel_sdk_hooks),
)
BASELINE = "none"
WARMUP = 50  # requests before each timed run: the socket is open and every code path warm


def warmup(requests: int) -> int:
    return min(WARMUP, requests)


def run(base_url: str, requests: int, rounds: int) -> dict[str, Any]:
    """Every configuration, ``rounds`` times, interleaved; CPU seconds per request each round."""
    clients: dict[str, Client] = {}
    unavailable: dict[str, str] = {}
    finishes: dict[str, Finish] = {}
    for config in CONFIGS:
        try:
            hooks, finishes[config.name] = config.make()
        except Unavailable as exc:
            unavailable[config.name] = str(exc)
            continue
        options = {} if hooks is None else {"hooks": hooks}
        clients[config.name] = Client(config.name, config.label, "", agent_session(**options))
    command = {
        "url": base_url + path_for("small", close=False),
        "concurrency": 1,
        "requests": requests,
        "warmup": warmup(requests),
        "body": len(SMALL_BODY),
    }
    samples: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for _ in range(rounds):
            for name, client in clients.items():
                figures = asyncio.run(measure_session(client, command))
                samples[name].append(figures["cpu"] / requests)
    finally:
        recorded = {name: finish() for name, finish in finishes.items()}
    return {"samples": samples, "unavailable": unavailable, "recorded": recorded}


def summarise(measured: dict[str, Any], requests: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = measured["samples"]
    base = samples[BASELINE]
    configs: dict[str, Any] = {}
    for config in CONFIGS:
        if config.name in measured["unavailable"]:
            configs[config.name] = {
                "label": config.label,
                "unavailable": measured["unavailable"][config.name],
            }
            continue
        mine = samples[config.name]
        ratios = [value / reference for value, reference in zip(mine, base, strict=True)]
        configs[config.name] = {
            "label": config.label,
            "cpu_us": statistics.median(mine) * 1e6,
            "ratio": statistics.median(ratios),
            "cpu_us_rounds": [value * 1e6 for value in mine],
            **measured["recorded"][config.name],
        }
    return {
        "requests": requests,
        "warmup": warmup(requests),
        "rounds": rounds,
        "concurrency": 1,
        "loop": "asyncio",
        "mode": "keep-alive",
        "configs": configs,
    }


def measure(base_url: str, requests: int, rounds: int, log: Log) -> dict[str, Any]:
    """The whole section, from a process of its own (the SDK's threads die with it)."""
    command = [sys.executable, "-m", "benchmarks.hooks", base_url, str(requests), str(rounds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the hooks benchmark failed:\n{done.stderr}")
    section: dict[str, Any] = json.loads(done.stdout)
    for name, figures in section["configs"].items():
        if "unavailable" in figures:
            log(f"  {name}: not available: {figures['unavailable']}")
        else:
            log(f"  {name}: {figures['cpu_us']:.1f} us per request, {figures['ratio']:.2f}x")
    return section


def main() -> None:
    base_url, requests, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a library prints must not mix with the answer
    out.write(json.dumps(summarise(run(base_url, requests, rounds), requests, rounds)) + "\n")


if __name__ == "__main__":
    main()
