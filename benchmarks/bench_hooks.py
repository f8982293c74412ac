"""What trace hooks cost: client CPU per request with no hooks, with hooks that do nothing, and
with OpenTelemetry (the API alone, and the SDK recording every span and metric).

The same set-up as ``bench_agent.py``: small keep-alive GETs to a bare asyncio upstream in a
child process, rounds alternating between the configurations, the median CPU time of this
process per request (``time.process_time()``: the SDK's export thread counts too) and its ratio
to the agent without hooks.

    .venv/bin/python benchmarks/bench_hooks.py [--requests 3000] [--rounds 7] [--concurrency 1]
        [--configs none,noop,otel-api,otel-sdk]

``--configs none`` alone runs on any version of the agent, so the same script, run with
``PYTHONPATH`` pointing at a checkout from before hooks existed, measures what the hooks' checks
cost an agent that has none. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench_agent import Get, measure, start_upstream

Factory = Callable[[], Any]  # returns the agent's hooks (or None for none)


def no_hooks() -> Any:
    return None


def noop_hooks() -> Any:
    """Every hook implemented, doing nothing: the cost of the hook machinery itself."""
    from starlette_agent import AgentHooks

    class Noop(AgentHooks):
        pass

    async def nothing(self: Any, event: Any) -> None:
        return None

    for name in (
        "request_start",
        "request_end",
        "request_error",
        "queued",
        "dequeued",
        "connection_create_start",
        "connection_created",
        "connection_reused",
        "connection_released",
        "connection_closed",
    ):
        setattr(Noop, name, nothing)
    return Noop()


def otel_api_hooks() -> Any:
    """OpenTelemetryHooks with no SDK configured: the API's no-op tracer and meter."""
    from starlette_agent.opentelemetry import OpenTelemetryHooks

    return OpenTelemetryHooks()


def otel_sdk_hooks() -> Any:
    """OpenTelemetryHooks on the SDK: every span sampled and batched to an exporter that drops
    it, every metric aggregated in memory."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from starlette_agent.opentelemetry import OpenTelemetryHooks

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryHooks(tracer_provider=tracer_provider, meter_provider=meter_provider)


CONFIGS: dict[str, Factory] = {
    "none": no_hooks,
    "noop": noop_hooks,
    "otel-api": otel_api_hooks,
    "otel-sdk": otel_sdk_hooks,
}


async def agent_client(url: str, hooks: Any) -> tuple[Get, Callable[[], Awaitable[Any]]]:
    from starlette_agent import Agent

    agent = Agent() if hooks is None else Agent(hooks=hooks)

    async def get() -> None:
        response = await agent.get(url)
        assert response.status == 200 and response.content == b"ok"

    return get, agent.aclose


async def run_hooks(
    url: str, configs: Sequence[str], *, requests: int, rounds: int, concurrency: int
) -> dict[str, list[float]]:
    """CPU seconds per request of each configuration, one sample per round."""
    made = {name: CONFIGS[name]() for name in configs}
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name in configs:
            get, close = await agent_client(url, made[name])
            try:
                results[name].append(await measure(get, requests, concurrency))
            finally:
                await close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    process, port = start_upstream()
    try:
        results = asyncio.run(
            run_hooks(
                f"http://127.0.0.1:{port}/",
                configs,
                requests=args.requests,
                rounds=args.rounds,
                concurrency=args.concurrency,
            )
        )
    finally:
        process.terminate()
        process.wait()
    base = statistics.median(results[configs[0]])
    print(
        f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}, "
        f"median client CPU per request (ratio to {configs[0]}):"
    )
    for name, samples in results.items():
        median = statistics.median(samples)
        spread = f"{min(samples) * 1e6:.1f}-{max(samples) * 1e6:.1f}"
        print(f"  {name:10s} {median * 1e6:8.1f} us  {median / base:5.2f}x   (rounds {spread} us)")


if __name__ == "__main__":
    main()
