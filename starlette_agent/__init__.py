"""Node-style HTTP agents for Starlette and FastAPI: per-origin keep-alive socket pools."""

from ._agent import Agent
from ._errors import (
    AgentClosed,
    AgentError,
    AgentTimeout,
    ConnectError,
    ConnectTimeout,
    InvalidRequest,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    ResponseTooLarge,
    WriteTimeout,
)
from ._global import global_agent, request
from ._options import AgentOptions
from ._response import Response
from ._stats import AgentStats, OriginStats
from ._urls import Origin

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentClosed",
    "AgentError",
    "AgentOptions",
    "AgentStats",
    "AgentTimeout",
    "ConnectError",
    "ConnectTimeout",
    "InvalidRequest",
    "Origin",
    "OriginStats",
    "PoolTimeout",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "ResponseTooLarge",
    "WriteTimeout",
    "__version__",
    "global_agent",
    "request",
]
