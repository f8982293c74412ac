"""Node-style HTTP agents for Starlette and FastAPI: per-origin keep-alive socket pools."""

from ._agent import Agent
from ._arguments import RequestArgs, RequestParts
from ._connection import Timeouts
from ._dependency import agent_dependency, get_agent
from ._errors import (
    AgentClosed,
    AgentError,
    AgentTimeout,
    BlockedAddress,
    ConnectError,
    ConnectTimeout,
    DecodingError,
    HTTPStatusError,
    InvalidOption,
    InvalidOptionType,
    InvalidRequest,
    PoolTimeout,
    ProxyError,
    ReadTimeout,
    RedirectError,
    RemoteProtocolError,
    RequestBodyError,
    ResponseTooLarge,
    StreamClosed,
    TooManyRedirects,
    WriteTimeout,
)
from ._global import global_agent, request
from ._hooks import (
    AgentHooks,
    CloseReason,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionCreateStartEvent,
    ConnectionReleasedEvent,
    ConnectionReusedEvent,
    DequeuedEvent,
    DequeueOutcome,
    QueuedEvent,
    RequestEndEvent,
    RequestErrorEvent,
    RequestStartEvent,
)
from ._options import AgentOptionArgs, AgentOptions, Connector, Scheduling
from ._registry import AgentRegistry
from ._request import Request
from ._response import Response
from ._settings import AgentSettings
from ._setup_errors import AgentNotConfigured, AgentSettingsError, UnknownAgentName
from ._stats import AgentStats, Counters, OriginStats
from ._urls import Origin
from ._version import __version__
from .middleware import AgentMiddleware

__all__ = [
    "Agent",
    "AgentClosed",
    "AgentError",
    "AgentHooks",
    "AgentMiddleware",
    "AgentNotConfigured",
    "AgentOptionArgs",
    "AgentOptions",
    "AgentRegistry",
    "AgentSettings",
    "AgentSettingsError",
    "AgentStats",
    "AgentTimeout",
    "BlockedAddress",
    "CloseReason",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosedEvent",
    "ConnectionCreateStartEvent",
    "ConnectionCreatedEvent",
    "ConnectionReleasedEvent",
    "ConnectionReusedEvent",
    "Connector",
    "Counters",
    "DecodingError",
    "DequeueOutcome",
    "DequeuedEvent",
    "HTTPStatusError",
    "InvalidOption",
    "InvalidOptionType",
    "InvalidRequest",
    "Origin",
    "OriginStats",
    "PoolTimeout",
    "ProxyError",
    "QueuedEvent",
    "ReadTimeout",
    "RedirectError",
    "RemoteProtocolError",
    "Request",
    "RequestArgs",
    "RequestBodyError",
    "RequestEndEvent",
    "RequestErrorEvent",
    "RequestParts",
    "RequestStartEvent",
    "Response",
    "ResponseTooLarge",
    "Scheduling",
    "StreamClosed",
    "Timeouts",
    "TooManyRedirects",
    "UnknownAgentName",
    "WriteTimeout",
    "__version__",
    "agent_dependency",
    "get_agent",
    "global_agent",
    "request",
]
