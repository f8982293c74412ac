"""Bad Agent options are refused at construction, by name, with an AgentError."""

from __future__ import annotations

import ipaddress

import pytest

from starlette_agent import (
    Agent,
    AgentError,
    AgentMiddleware,
    AgentOptions,
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


# Options the Agent constructor may not take yet: checked where every option is, AgentOptions.
OPTIONS_BAD_VALUES = [
    ("headers_timeout", 0),
    ("headers_timeout", -1.5),
    ("headers_timeout", float("nan")),
    ("headers_timeout", float("inf")),
    ("allowed_networks", ["10.0.0.1/8"]),
    ("allowed_networks", ["10.0.0.0/33"]),
    ("allowed_networks", ["not a network"]),
]

OPTIONS_BAD_TYPES = [
    ("headers_timeout", "30"),
    ("block_private_networks", "yes"),
    ("block_private_networks", 1),
    ("allowed_networks", "10.0.0.0/8"),
    ("allowed_networks", [10]),
]


@pytest.mark.parametrize(("option", "value"), OPTIONS_BAD_VALUES)
def test_options_refuse_a_bad_value_naming_it(option: str, value: object) -> None:
    with pytest.raises(InvalidOption) as caught:
        AgentOptions(**{option: value})  # type: ignore[arg-type]
    named = value[0] if isinstance(value, list) else value
    assert option in str(caught.value) and repr(named) in str(caught.value)


@pytest.mark.parametrize(("option", "value"), OPTIONS_BAD_TYPES)
def test_options_refuse_a_bad_type_naming_it(option: str, value: object) -> None:
    with pytest.raises(InvalidOptionType) as caught:
        AgentOptions(**{option: value})  # type: ignore[arg-type]
    named = value[0] if isinstance(value, list) else value
    assert option in str(caught.value) and repr(named) in str(caught.value)


def test_network_options_are_normalised_to_a_tuple_of_cidr_strings() -> None:
    defaults = AgentOptions()
    assert defaults.block_private_networks is False
    assert defaults.allowed_networks == ()
    assert defaults.headers_timeout == 30.0
    options = AgentOptions(
        block_private_networks=True,
        allowed_networks=["10.0.0.0/8", ipaddress.ip_network("fd00::/8"), "127.0.0.1", "::1"],
        headers_timeout=None,
    )
    assert options.allowed_networks == ("10.0.0.0/8", "fd00::/8", "127.0.0.1/32", "::1/128")
    same = AgentOptions(
        block_private_networks=True,
        allowed_networks=("10.0.0.0/8", "fd00::/8", "127.0.0.1/32", "::1/128"),
        headers_timeout=None,
    )
    assert options == same and hash(options) == hash(same)
    generated = AgentOptions(allowed_networks=(f"10.{i}.0.0/16" for i in range(2)))
    assert generated.allowed_networks == ("10.0.0.0/16", "10.1.0.0/16")
