"""Bad Agent options are refused at construction, by name, with an AgentError."""

from __future__ import annotations

import pytest

from starlette_agent import (
    Agent,
    AgentError,
    AgentMiddleware,
    InvalidOption,
    InvalidOptionType,
)

BAD_VALUES = [
    ("scheduling", "random"),
    ("max_sockets", 0),
    ("max_sockets", -1),
    ("max_total_sockets", 0),
    ("max_free_sockets", -1),
    ("idle_timeout", 0),
    ("idle_timeout", float("nan")),
    ("keep_alive_timeout_buffer", -1.0),
    ("connect_timeout", -1),
    ("read_timeout", float("inf")),
    ("write_timeout", 0),
    ("pool_timeout", -0.5),
    ("max_requests_per_socket", 0),
    ("max_response_size", -1),
    ("local_address", ""),
]

BAD_TYPES = [
    ("keep_alive", "yes"),
    ("max_sockets", "ten"),
    ("max_sockets", 2.5),
    ("max_sockets", True),
    ("read_timeout", "30"),
    ("ssl_context", "verify"),
    ("connector", 42),
]


@pytest.mark.parametrize(("option", "value"), BAD_VALUES)
def test_bad_value_is_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(InvalidOption) as caught:
        Agent(**{option: value})  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, AgentError)
    assert option in str(caught.value) and repr(value) in str(caught.value)


@pytest.mark.parametrize(("option", "value"), BAD_TYPES)
def test_bad_type_is_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(InvalidOptionType) as caught:
        Agent(**{option: value})  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
    assert option in str(caught.value) and repr(value) in str(caught.value)


def test_good_values_are_kept() -> None:
    agent = Agent(max_sockets=3, scheduling="fifo", idle_timeout=None, pool_timeout=1)
    assert (agent.config.max_sockets, agent.config.scheduling) == (3, "fifo")
    assert agent.config.idle_timeout is None


def test_middleware_options_are_agent_errors_too() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(InvalidOption, match="shutdown_timeout"):
        AgentMiddleware(app, shutdown_timeout=-1)
    with pytest.raises(InvalidOptionType, match="agent"):
        AgentMiddleware(app, agent=42)  # type: ignore[arg-type]
