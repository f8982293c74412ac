"""OpenTelemetry for an agent: a CLIENT span per request, W3C trace context sent with it, and the
HTTP client metrics, following OpenTelemetry's stable HTTP semantic conventions.

    from starlette_agent import Agent
    from starlette_agent.opentelemetry import OpenTelemetryHooks

    agent = Agent(hooks=OpenTelemetryHooks())

It needs ``opentelemetry-api`` only (``pip install starlette-agent[otel]``); the SDK, its
exporters and its configuration are the application's. Without an SDK the API's no-op tracer
and meter make the hooks cost next to nothing.

What it records:

* A span of kind CLIENT per request, named after the method (``GET``; ``HTTP`` for a method
  the conventions do not know), a child of the span current where the request was sent (a
  handler's server span). It starts when the request does, so that it covers waiting for a
  socket and connecting, and ends when the response head arrives, with
  ``http.request.method``, ``server.address``, ``server.port``, ``url.full`` (credentials and
  signature query values replaced by ``REDACTED``), ``http.response.status_code``,
  ``network.protocol.version``, and ``http.request.resend_count`` when the agent sent it again.
  A 4xx or 5xx status, or an error (``error.type``: the exception's class name, such as
  ``ConnectError``, ``ReadTimeout``, ``CancelledError``) sets the span's status to ERROR.
* The ``traceparent`` (and ``tracestate``, baggage: whatever the configured propagator writes)
  of that span in the request's headers, so that the server's spans join the same trace.
* ``http.client.request.duration`` (a histogram, in seconds, to the response head), with the
  method, server address and port, status code, protocol version and ``error.type``.
* ``http.client.open_connections`` (an up-down counter) by ``http.connection.state``
  (``active`` or ``idle``), ``server.address`` and ``server.port``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from . import __version__
from ._hooks import (
    AgentHooks,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionReleasedEvent,
    ConnectionReusedEvent,
    RequestEndEvent,
    RequestErrorEvent,
    RequestStartEvent,
)
from ._request import HeaderTypes
from ._urls import Origin

__all__ = ["OpenTelemetryHooks", "redacted_url"]

_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# The conventions' advice for http.client.request.duration, in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Query parameters whose values url.full never shows (signed URLs carry a credential there).
SENSITIVE_QUERY_PARAMETERS = frozenset(
    {"AWSAccessKeyId", "Signature", "sig", "X-Amz-Credential", "X-Amz-Security-Token"}
    | {"X-Amz-Signature", "X-Goog-Signature"}
)
_REDACTED = "REDACTED"


class OpenTelemetryHooks(AgentHooks):
    """Agent hooks that trace each request and record the HTTP client metrics.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (set by the SDK's
    configuration); ``propagator`` to the global text map propagator, read at each request
    (W3C trace context and baggage unless configured otherwise). One object may serve many
    agents.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            __name__, __version__, tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(__name__, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._open_connections = meter.create_up_down_counter(
            "http.client.open_connections",
            unit="{connection}",
            description=(
                "Number of outbound HTTP connections that are currently active or idle on the "
                "client."
            ),
        )
        self._propagator = propagator

    # -- requests ------------------------------------------------------------------------------

    async def request_start(self, event: RequestStartEvent) -> HeaderTypes | None:
        request = event.request
        method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": request.origin.host,
            "server.port": request.origin.port,
        }
        span_attributes = {**attributes, "url.full": redacted_url(request.url)}
        if method == "_OTHER":
            span_attributes["http.request.method_original"] = request.method
        span = self._tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            kind=SpanKind.CLIENT,
            attributes=span_attributes,
        )
        event.context[self] = (span, attributes)
        headers: dict[str, str] = {}
        propagator = self._propagator or propagate.get_global_textmap()
        propagator.inject(headers, context=trace.set_span_in_context(span))
        return headers or None

    async def request_end(self, event: RequestEndEvent) -> None:
        span, attributes = self._take(event.context)
        status = event.status
        attributes["http.response.status_code"] = status
        attributes["network.protocol.version"] = event.response.http_version
        if status >= 400:
            attributes["error.type"] = str(status)
        if span.is_recording():
            span.set_attributes(attributes)
            if event.retries:
                span.set_attribute("http.request.resend_count", event.retries)
            if status >= 400:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        self._duration.record(event.duration, attributes)

    async def request_error(self, event: RequestErrorEvent) -> None:
        span, attributes = self._take(event.context)
        error_type = type(event.error).__qualname__
        attributes["error.type"] = error_type
        if span.is_recording():
            span.set_attribute("error.type", error_type)
            if event.retries:
                span.set_attribute("http.request.resend_count", event.retries)
            span.record_exception(event.error)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()
        self._duration.record(event.duration, attributes)

    def _take(self, context: dict[Any, Any]) -> tuple[Span, dict[str, Any]]:
        span, attributes = context.pop(self)
        return span, dict(attributes)

    # -- connections ---------------------------------------------------------------------------

    async def connection_created(self, event: ConnectionCreatedEvent) -> None:
        self._count(event.origin, "active", 1)

    async def connection_reused(self, event: ConnectionReusedEvent) -> None:
        self._count(event.origin, "idle", -1)
        self._count(event.origin, "active", 1)

    async def connection_released(self, event: ConnectionReleasedEvent) -> None:
        self._count(event.origin, "active", -1)
        self._count(event.origin, "idle", 1)

    async def connection_closed(self, event: ConnectionClosedEvent) -> None:
        self._count(event.origin, "idle" if event.idle else "active", -1)

    def _count(self, origin: Origin, state: str, change: int) -> None:
        self._open_connections.add(
            change,
            {
                "http.connection.state": state,
                "server.address": origin.host,
                "server.port": origin.port,
            },
        )


def redacted_url(url: str) -> str:
    """``url`` as ``url.full`` may show it: user and password, and the values of signature
    query parameters (``SENSITIVE_QUERY_PARAMETERS``), replaced by ``REDACTED``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_REDACTED}:{_REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query and any(name in query for name in SENSITIVE_QUERY_PARAMETERS):
        # Only those values change: the rest of the query is kept exactly as it was written.
        fields = []
        for field in query.split("&"):
            name, equals, _ = field.partition("=")
            secret = equals and unquote(name) in SENSITIVE_QUERY_PARAMETERS
            fields.append(f"{name}={_REDACTED}" if secret else field)
        query = "&".join(fields)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
