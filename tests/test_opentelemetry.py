"""``starlette_agent.opentelemetry``: spans, trace context and metrics, read back from the real
OpenTelemetry SDK (in-memory exporter and metric reader) after requests to real servers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
)
from opentelemetry.semconv.metrics import http_metrics
from opentelemetry.trace import SpanKind, StatusCode
from servers import ServerThread, UvicornServer, echo_app

from starlette_agent import Agent, ConnectError
from starlette_agent.opentelemetry import OpenTelemetryHooks, redacted_url

pytestmark = pytest.mark.anyio


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def hooks(self) -> OpenTelemetryHooks:
        return OpenTelemetryHooks(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def client_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.kind is SpanKind.CLIENT]

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def open_connections(self) -> dict[str, int]:
        counts = {"active": 0, "idle": 0}
        for point in self.points("http.client.open_connections"):
            counts[point.attributes["http.connection.state"]] += point.value
        return counts


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_a_client_span_per_request_with_the_conventions_attributes(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    async with Agent(hooks=telemetry.hooks()) as agent:
        ok = await agent.get(f"{server.url}/echo?x=1")
        missing = await agent.post(f"{server.url}/status/404", content=b"body")
    first, second = telemetry.client_spans()
    assert first.name == "GET" and second.name == "POST"
    assert dict(first.attributes or {}) == {
        http_attributes.HTTP_REQUEST_METHOD: "GET",
        server_attributes.SERVER_ADDRESS: "127.0.0.1",
        server_attributes.SERVER_PORT: server.port,
        url_attributes.URL_FULL: f"{server.url}/echo?x=1",
        http_attributes.HTTP_RESPONSE_STATUS_CODE: 200,
        network_attributes.NETWORK_PROTOCOL_VERSION: "1.1",
    }
    assert first.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})[error_attributes.ERROR_TYPE] == "404"
    assert second.status.status_code is StatusCode.ERROR
    assert missing.status == 404
    # The server received the trace context of the very span that timed its request.
    headers = dict(ok.json()["headers"])
    assert headers["traceparent"] == traceparent_of(first)
    assert first.parent is None  # no span was current: a trace of its own


async def test_the_client_span_is_a_child_of_the_current_span(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with Agent(hooks=telemetry.hooks()) as agent:
        with tracer.start_as_current_span("handler") as handler:
            await agent.get(f"{server.url}/peer")
            await agent.get(f"{server.url}/peer")
    spans = telemetry.client_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == handler.get_span_context().span_id
        assert span.context is not None
        assert span.context.trace_id == handler.get_span_context().trace_id


async def test_credentials_and_signatures_never_reach_the_span(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    url = f"http://ada:s3cret@127.0.0.1:{server.port}/echo?sig=abc%2F&color=blue+green"
    async with Agent(hooks=telemetry.hooks()) as agent:
        response = await agent.get(url)
    assert response.json()["query"] == "sig=abc%2F&color=blue+green"  # sent as written
    [span] = telemetry.client_spans()
    shown = f"http://REDACTED:REDACTED@127.0.0.1:{server.port}/echo?sig=REDACTED&color=blue+green"
    assert (span.attributes or {})[url_attributes.URL_FULL] == shown
    assert "s3cret" not in json.dumps(dict(span.attributes or {}))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://example.com/a?b=c", "https://example.com/a?b=c"),
        ("https://u@example.com/", "https://REDACTED:REDACTED@example.com/"),
        ("https://u:p@example.com:8443/x", "https://REDACTED:REDACTED@example.com:8443/x"),
        (
            "https://s3.example/k?X-Amz-Signature=1&X-Amz-Credential=2&X-Amz-Security-Token=3",
            "https://s3.example/k?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED"
            "&X-Amz-Security-Token=REDACTED",
        ),
        (
            "https://x.example/?X-Goog-Signature=a&SIG=b",
            "https://x.example/?X-Goog-Signature=REDACTED&SIG=b",
        ),
        ("https://x.example/?signature=a&sig", "https://x.example/?signature=a&sig"),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


async def test_an_unknown_method_is_named_as_the_conventions_say(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    async with Agent(hooks=telemetry.hooks()) as agent:
        await agent.request("PURGE", f"{server.url}/echo")
    [span] = telemetry.client_spans()
    assert span.name == "HTTP"
    assert (span.attributes or {})[http_attributes.HTTP_REQUEST_METHOD] == "_OTHER"
    assert (span.attributes or {})[http_attributes.HTTP_REQUEST_METHOD_ORIGINAL] == "PURGE"


async def test_a_failed_request_ends_its_span_with_the_error(telemetry: Telemetry) -> None:
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        async with Agent(hooks=telemetry.hooks()) as agent:
            with pytest.raises(ConnectError):
                await agent.get(f"http://127.0.0.1:{port}/")
    [span] = telemetry.client_spans()
    assert (span.attributes or {})[error_attributes.ERROR_TYPE] == "ConnectError"
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    [point] = telemetry.points(http_metrics.HTTP_CLIENT_REQUEST_DURATION)
    assert point.attributes[error_attributes.ERROR_TYPE] == "ConnectError"
    assert point.count == 1


async def test_a_cancelled_request_still_ends_its_span(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    async with Agent(hooks=telemetry.hooks()) as agent:
        with anyio.move_on_after(0.2):
            await agent.get(f"{server.url}/slow?delay=5")
    [span] = telemetry.client_spans()
    assert (span.attributes or {})[error_attributes.ERROR_TYPE] in ("CancelledError", "Cancelled")
    assert telemetry.open_connections() == {"active": 0, "idle": 0}


async def test_request_duration_histogram(server: UvicornServer, telemetry: Telemetry) -> None:
    async with Agent(hooks=telemetry.hooks()) as agent:
        for _ in range(3):
            await agent.get(f"{server.url}/peer?delay=0.01")
        await agent.get(f"{server.url}/status/503")
    points = {
        point.attributes.get(http_attributes.HTTP_RESPONSE_STATUS_CODE): point
        for point in telemetry.points(http_metrics.HTTP_CLIENT_REQUEST_DURATION)
    }
    assert set(points) == {200, 503}
    ok = points[200]
    assert ok.count == 3 and 0.03 <= ok.sum < 10
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert list(ok.explicit_bounds)[:3] == [0.005, 0.01, 0.025]  # the conventions' buckets
    assert points[503].attributes["error.type"] == "503"


async def test_open_connections_follow_the_pool(
    server: UvicornServer, server2: UvicornServer, telemetry: Telemetry
) -> None:
    async with Agent(hooks=telemetry.hooks(), max_sockets=2) as agent:
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(agent.get, f"{server.url}/peer?delay=0.05")
        async with agent.stream("GET", f"{server2.url}/stream/1") as streamed:
            stats = agent.stats()
            assert (stats.active, stats.idle) == (1, 2)
            assert telemetry.open_connections() == {"active": 1, "idle": 2}
            by_port = {
                (p.attributes["server.port"], p.attributes["http.connection.state"]): p.value
                for p in telemetry.points("http.client.open_connections")
            }
            assert by_port[(server.port, "idle")] == 2
            assert by_port[(server2.port, "active")] == 1
            await streamed.aread()
        assert telemetry.open_connections() == {"active": 0, "idle": 3}
    assert telemetry.open_connections() == {"active": 0, "idle": 0}


async def test_several_agents_share_one_hooks_object(
    server: UvicornServer, telemetry: Telemetry
) -> None:
    hooks = telemetry.hooks()
    async with Agent(hooks=hooks) as one, Agent(hooks=[hooks]) as two:
        await one.get(f"{server.url}/peer")
        await two.get(f"{server.url}/peer")
        assert telemetry.open_connections() == {"active": 0, "idle": 2}
    assert len(telemetry.client_spans()) == 2


# --------------------------------------------------------------------------- two servers


async def test_a_handler_and_its_outbound_call_form_one_trace(
    server_thread: ServerThread, telemetry: Telemetry
) -> None:
    """front (uvicorn, instrumented by opentelemetry-instrumentation-asgi) calls back (the same)
    through an instrumented agent: back's server span is a child of the client span, which is
    a child of front's server span, all one trace."""
    provider = telemetry.tracer_provider
    back = UvicornServer(
        server_thread, app=OpenTelemetryMiddleware(echo_app, tracer_provider=provider)
    )
    outbound = Agent(hooks=telemetry.hooks())  # used on the servers' event loop only

    async def front_app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        response = await outbound.get(f"{back.url}/echo")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": response.content})

    front = UvicornServer(
        server_thread, app=OpenTelemetryMiddleware(front_app, tracer_provider=provider)
    )
    try:
        async with Agent() as client:
            echoed = (await client.get(f"{front.url}/call")).json()
    finally:
        server_thread.portal.call(outbound.aclose)
        front.close()
        back.close()

    spans = telemetry.spans.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    [client_span] = telemetry.client_spans()
    [front_span] = [s for s in servers if s.attributes and "/call" in str(dict(s.attributes))]
    [back_span] = [s for s in servers if s is not front_span]
    assert dict(echoed["headers"])["traceparent"] == traceparent_of(client_span)
    assert client_span.parent is not None and back_span.parent is not None
    assert client_span.parent.span_id == front_span.context.span_id  # type: ignore[union-attr]
    assert back_span.parent.span_id == client_span.context.span_id  # type: ignore[union-attr]
    assert len({span.context.trace_id for span in (front_span, client_span, back_span)}) == 1  # type: ignore[union-attr]
