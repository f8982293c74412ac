"""One options type: how an Agent takes its options, and bad ones refused by name when made."""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
from typing import Any, get_args

import pytest

import starlette_agent
from starlette_agent import (
    Agent,
    AgentError,
    AgentMiddleware,
    AgentOptionArgs,
    AgentOptions,
    InvalidOption,
    InvalidOptionType,
)
from starlette_agent._option_table import OPTION_TABLE

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
    ("local_address", "not-an-ip"),
    ("local_address", "localhost"),
    ("local_address", "10.0.0.1/8"),
]

BAD_TYPES = [
    ("keep_alive", "yes"),
    ("max_sockets", "ten"),
    ("max_sockets", 2.5),
    ("max_sockets", True),
    ("read_timeout", "30"),
    ("ssl_context", "verify"),
    ("connector", 42),
    ("local_address", 127),
    ("hooks", 42),
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


# The same checks, made on AgentOptions itself.
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


# ------------------------------------------------------------------ one options type


async def _connector(origin: object) -> Any:  # pragma: no cover - never called
    raise AssertionError


#: One bad value for every option: each is checked when the options are made.
ONE_BAD_VALUE_EACH: dict[str, object] = {
    "keep_alive": None,
    "max_sockets": 0,
    "max_total_sockets": 0,
    "max_free_sockets": None,
    "scheduling": "FIFO",
    "idle_timeout": 0,
    "keep_alive_timeout_buffer": None,
    "connect_timeout": float("nan"),
    "read_timeout": -1,
    "headers_timeout": float("inf"),
    "write_timeout": "30",
    "pool_timeout": 0,
    "max_requests_per_socket": 0,
    "max_response_size": -1,
    "ssl_context": "verify",
    "local_address": "not-an-ip",
    "block_private_networks": "no",
    "allowed_networks": "10.0.0.0/8",
    "connector": "tcp",
    "proxy": "socks5://proxy:1080",
    "trust_env": "yes",
    "http_parser": "llhttp",
    "base_url": "/relative",
    "headers": {"content-length": "5"},
    "decompress": "gzip",
    "follow_redirects": 1,
    "max_redirects": -1,
    "allow_https_downgrade": None,
    "hooks": "tracing",
}


def test_every_option_is_validated_when_the_options_are_made() -> None:
    assert set(ONE_BAD_VALUE_EACH) == set(AgentOptions.names())
    for option, value in ONE_BAD_VALUE_EACH.items():
        with pytest.raises(InvalidOption) as caught:
            AgentOptions(**{option: value})  # type: ignore[arg-type]
        assert caught.value.option == option
        assert option in str(caught.value)


def test_option_args_list_exactly_the_options_with_the_same_types() -> None:
    args = {name: hint.__forward_arg__ for name, hint in AgentOptionArgs.__annotations__.items()}
    options = {field.name: field.type for field in dataclasses.fields(AgentOptions)}
    assert args == options
    assert AgentOptionArgs.__total__ is False
    assert set(OPTION_TABLE) == set(options)  # and the table of their variables


def test_agent_takes_options_keywords_or_options_with_changes() -> None:
    options = AgentOptions(max_sockets=3, scheduling="fifo")
    assert Agent(options).config is options
    assert Agent(max_sockets=3, scheduling="fifo").config == options
    changed = Agent(options, max_sockets=5, idle_timeout=None).config
    assert changed == AgentOptions(max_sockets=5, scheduling="fifo", idle_timeout=None)
    assert options.max_sockets == 3  # options are values: the agent changed a copy
    assert Agent().config == AgentOptions()
    with pytest.raises(InvalidOption, match="max_sockets must be >= 1"):
        Agent(options, max_sockets=0)


def test_agent_refuses_other_positional_options_naming_the_fix() -> None:
    with pytest.raises(InvalidOptionType, match=r"for a mapping write Agent\(\*\*mapping\)"):
        Agent({"max_sockets": 3})  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionType, match="keyword arguments only"):
        AgentOptions(3)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("keyword", "fragment"),
    [
        ("max_sockts", "did you mean 'max_sockets'?"),
        ("idle_timout", "did you mean 'idle_timeout'?"),
        ("maxSockets", "maxSockets is Node's name for max_sockets"),
        ("keepAlive", "keepAlive is Node's name for keep_alive"),
        ("maxTotalSockets", "Node's name for max_total_sockets"),
        ("localAddress", "Node's name for local_address"),
        ("createConnection", "Node's name for connector"),
        ("timeout", "read_timeout (the longest wait for a response's next bytes) and idle_timeout"),
        ("colour", "the options are: keep_alive, max_sockets"),
    ],
)
def test_an_unknown_keyword_is_refused_naming_the_option_meant(keyword: str, fragment: str) -> None:
    for make in (Agent, AgentOptions, AgentOptions().replace):
        with pytest.raises(InvalidOptionType, match=f"unknown agent option {keyword!r}") as caught:
            make(**{keyword: 1})
        assert fragment in str(caught.value)
        assert caught.value.option == keyword


def test_local_address_is_checked_and_normalised() -> None:
    with pytest.raises(InvalidOption, match="local_address must be an IP address") as caught:
        Agent(local_address="not-an-ip")
    assert "'not-an-ip'" in str(caught.value)
    assert AgentOptions(local_address="0:0:0:0:0:0:0:1").local_address == "::1"
    assert AgentOptions(local_address="127.0.0.1").local_address == "127.0.0.1"


def test_a_connector_and_private_network_blocking_are_refused_together_in_options() -> None:
    with pytest.raises(InvalidOption, match="block_private_networks cannot check") as caught:
        AgentOptions(block_private_networks=True, connector=_connector)
    assert caught.value.option == "block_private_networks"
    assert AgentOptions(connector=_connector).connector is _connector


def test_options_print_only_what_differs_from_the_defaults() -> None:
    assert repr(AgentOptions()) == "AgentOptions()"
    context = ssl.create_default_context()
    shown = repr(AgentOptions(max_sockets=2, ssl_context=context))
    assert shown == f"AgentOptions(max_sockets=2, ssl_context={context!r})"


def test_option_types_are_exported() -> None:
    from starlette_agent import Connector, Scheduling

    assert get_args(Scheduling) == ("lifo", "fifo")
    assert "Connector" in starlette_agent.__all__ and "Scheduling" in starlette_agent.__all__
    assert get_args(Connector)  # a real alias, usable at run time, not a string
