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
    "ConnectError",
    "ConnectTimeout",
    "Connector",
    "Counters",
    "DecodingError",
    "HTTPStatusError",
    "InvalidOption",
    "InvalidOptionType",
    "InvalidRequest",
    "Origin",
    "OriginStats",
    "PoolTimeout",
    "ProxyError",
    "ReadTimeout",
    "RedirectError",
    "RemoteProtocolError",
    "Request",
    "RequestArgs",
    "RequestBodyError",
    "RequestParts",
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
