"""AGENT_* variables: the grammar, which variables are ours, and errors that name the variable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.config import Config

from starlette_agent import Agent, AgentOptions, AgentSettings, InvalidOption
from starlette_agent._registry import AgentRegistry
from starlette_agent._settings import read_agent_settings
from starlette_agent._setup_errors import AgentSettingsError


def settings_from(
    env: dict[str, str], env_file: Path | None = None, **kwargs: Any
) -> dict[str, AgentOptions]:
    return read_agent_settings(Config(env_file, environ=env), **kwargs)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "starlette_agent" and record.levelno == logging.WARNING
    ]


def test_agent_settings_is_another_name_for_agent_options() -> None:
    assert AgentSettings is AgentOptions
    assert "AgentSettings" in (AgentOptions.__doc__ or "")


def test_default_and_named_agents_from_variables() -> None:
    found = settings_from(
        {
            "AGENT_MAX_SOCKETS": "10",
            "AGENT_PAYMENTS_MAX_SOCKETS": "2",
            "AGENT_PAYMENTS_IDLE_TIMEOUT": "none",
            "AGENT_PAYMENTS_SCHEDULING": "fifo",
            "AGENT_SEARCH_KEEP_ALIVE": "off",
            "UNRELATED": "1",
        }
    )
    assert found == {
        "default": AgentOptions(max_sockets=10),
        "payments": AgentOptions(max_sockets=2, idle_timeout=None, scheduling="fifo"),
        "search": AgentOptions(keep_alive=False),
    }


def test_option_names_with_underscores_match_longest_first() -> None:
    found = settings_from(
        {
            "AGENT_MAX_TOTAL_SOCKETS": "7",
            "AGENT_KEEP_ALIVE_TIMEOUT_BUFFER": "0.5",
            "AGENT_MY_API_MAX_TOTAL_SOCKETS": "3",
            "AGENT_MY_API_MAX_REQUESTS_PER_SOCKET": "100",
        }
    )
    assert found["default"] == AgentOptions(max_total_sockets=7, keep_alive_timeout_buffer=0.5)
    assert found["my_api"] == AgentOptions(max_total_sockets=3, max_requests_per_socket=100)
    assert set(found) == {"default", "my_api"}


def test_a_double_underscore_ends_the_agent_name() -> None:
    found = settings_from(
        {
            "AGENT_PAYMENTS_API__MAX_SOCKETS": "2",
            "AGENT_PAYMENTS_API__KEEP_ALIVE_TIMEOUT_BUFFER": "0.5",
            "AGENT_DEFAULT__MAX_TOTAL_SOCKETS": "9",
            "AGENT_V2__SCHEDULING": "fifo",
        }
    )
    assert found == {
        "payments_api": AgentOptions(max_sockets=2, keep_alive_timeout_buffer=0.5),
        "default": AgentOptions(max_total_sockets=9),
        "v2": AgentOptions(scheduling="fifo"),
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("AGENT_PAYMENTS_MAX_SOCKETS", "AGENT_PAYMENTS__MAX_SOCKETS"),
        ("AGENT_MAX_SOCKETS", "AGENT_DEFAULT__MAX_SOCKETS"),
        ("AGENT_MAX_SOCKETS", "AGENT_DEFAULT_MAX_SOCKETS"),
    ],
)
def test_both_forms_for_one_option_of_one_agent_is_an_error_naming_both(
    first: str, second: str
) -> None:
    with pytest.raises(AgentSettingsError, match="both set 'max_sockets' of agent") as caught:
        settings_from({first: "1", second: "2"})
    assert first in str(caught.value) and second in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("AGENT_MAX_SOCKETS", "ten", "max_sockets must be an integer"),
        ("AGENT_PAYMENTS_MAX_SOCKETS", "ten", "max_sockets must be an integer"),
        ("AGENT_PAYMENTS__MAX_SOCKETS", "ten", "max_sockets must be an integer"),
        ("AGENT_MAX_SOCKETS", "0", "max_sockets must be >= 1"),
        ("AGENT_MAX_SOCKETS", "2.5", "max_sockets must be an integer"),
        ("AGENT_MAX_FREE_SOCKETS", "none", "max_free_sockets must be an integer"),
        ("AGENT_READ_TIMEOUT", "-1", "read_timeout must be a finite number"),
        ("AGENT_PAYMENTS_CONNECT_TIMEOUT", "soon", "connect_timeout must be a number"),
        ("AGENT_IDLE_TIMEOUT", "inf", "idle_timeout must be a finite number"),
        ("AGENT_SCHEDULING", "random", "scheduling must be 'lifo' or 'fifo'"),
        ("AGENT_SCHEDULING", "FIFO", "scheduling must be 'lifo' or 'fifo', got 'FIFO'"),
        ("AGENT_KEEP_ALIVE", "maybe", "keep_alive must be true or false"),
        ("AGENT_SSL_CONTEXT", "x", "ssl_context cannot be set from the environment"),
        ("AGENT_PAYMENTS_CONNECTOR", "x", "connector cannot be set from the environment"),
        ("AGENT_HEADERS_TIMEOUT", "-1", "headers_timeout must be a finite number"),
        ("AGENT_HEADERS_TIMEOUT", "soon", "headers_timeout must be a number"),
        ("AGENT_BLOCK_PRIVATE_NETWORKS", "maybe", "block_private_networks must be true or false"),
        ("AGENT_ALLOWED_NETWORKS", "10.0.0.1/8", "'10.0.0.1/8' is not a network"),
        ("AGENT_ALLOWED_NETWORKS", "10.0.0.0/8,localhost", "'localhost' is not a network"),
        ("AGENT_LOCAL_ADDRESS", "not-an-ip", "local_address must be an IP address"),
    ],
)
def test_bad_values_are_rejected_naming_variable_and_value(
    variable: str, value: str, fragment: str
) -> None:
    with pytest.raises(AgentSettingsError) as caught:
        settings_from({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r}: ")
    assert fragment in message
    assert caught.value.variable == variable
    assert caught.value.value == value


# (option, value in code, the same value in a variable, accepted?)
SAME_VALUE_BOTH_WAYS: list[tuple[str, Any, str, bool]] = [
    ("scheduling", "fifo", "fifo", True),
    ("scheduling", "FIFO", "FIFO", False),
    ("scheduling", "Lifo", "Lifo", False),
    ("scheduling", "random", "random", False),
    ("local_address", "127.0.0.1", "127.0.0.1", True),
    ("local_address", "::1", "::1", True),
    ("local_address", "not-an-ip", "not-an-ip", False),
    ("local_address", "localhost", "localhost", False),
    ("local_address", "10.0.0.256", "10.0.0.256", False),
    ("max_sockets", 3, "3", True),
    ("max_sockets", 0, "0", False),
    ("max_sockets", None, "none", True),
    ("max_free_sockets", 0, "0", True),
    ("max_free_sockets", -1, "-1", False),
    ("idle_timeout", 0.5, "0.5", True),
    ("idle_timeout", 0.0, "0", False),
    ("idle_timeout", float("inf"), "inf", False),
    ("idle_timeout", float("nan"), "nan", False),
    ("keep_alive_timeout_buffer", 0, "0", True),
    ("read_timeout", -1.0, "-1", False),
    ("max_response_size", 0, "0", True),
    ("max_requests_per_socket", 0, "0", False),
    ("keep_alive", False, "false", True),
    ("block_private_networks", True, "true", True),
    ("allowed_networks", ("10.0.0.0/8", "::1"), "10.0.0.0/8,::1", True),
    ("allowed_networks", ("10.0.0.1/8",), "10.0.0.1/8", False),
]


@pytest.mark.parametrize(("option", "code", "text", "accepted"), SAME_VALUE_BOTH_WAYS)
def test_a_value_is_accepted_or_refused_alike_from_code_and_from_a_variable(
    option: str, code: Any, text: str, accepted: bool
) -> None:
    variable = f"AGENT_{option.upper()}"
    if accepted:
        from_code = Agent(**{option: code}).config
        assert AgentOptions.from_env(Config(environ={variable: text})) == from_code
        return
    with pytest.raises(InvalidOption) as refused_in_code:
        Agent(**{option: code})
    with pytest.raises(AgentSettingsError) as refused_in_env:
        AgentOptions.from_env(Config(environ={variable: text}))
    # The same rule, with the same words: the variable's message ends in the code's message.
    assert str(refused_in_env.value) == f"{variable}={text!r}: {refused_in_code.value}"


def test_network_options_and_headers_timeout_from_variables() -> None:
    found = settings_from(
        {
            "AGENT_BLOCK_PRIVATE_NETWORKS": "true",
            "AGENT_ALLOWED_NETWORKS": " 10.0.0.0/8, fd00::/8 ,,127.0.0.1",
            "AGENT_HEADERS_TIMEOUT": "5",
            "AGENT_PAYMENTS_ALLOWED_NETWORKS": "",
            "AGENT_PAYMENTS_HEADERS_TIMEOUT": "none",
        }
    )
    assert found["default"] == AgentOptions(
        block_private_networks=True,
        allowed_networks=["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"],
        headers_timeout=5.0,
    )
    assert found["default"].allowed_networks == ("10.0.0.0/8", "fd00::/8", "127.0.0.1/32")
    assert found["payments"] == AgentOptions(headers_timeout=None)
    assert repr(found["payments"]) == "AgentOptions(headers_timeout=None)"


def test_bad_values_fail_registry_construction_at_startup() -> None:
    with pytest.raises(AgentSettingsError, match="AGENT_PAYMENTS_MAX_SOCKETS='ten'"):
        AgentRegistry.from_settings(Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "ten"}))


def test_a_cross_option_error_names_the_variable_that_made_it() -> None:
    async def connector(origin: object) -> Any:  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(AgentSettingsError, match="AGENT_BLOCK_PRIVATE_NETWORKS='1': block_pr"):
        AgentRegistry.from_settings(
            Config(environ={"AGENT_BLOCK_PRIVATE_NETWORKS": "1"}),
            agents={"default": {"connector": connector}},
        )


# ------------------------------------------------------------------ which variables are ours


def test_misspelt_option_is_an_error_but_foreign_variables_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(AgentSettingsError, match="did you mean AGENT_MAX_SOCKETS"):
        settings_from({"AGENT_MAX_SOCKET": "1"})
    with pytest.raises(AgentSettingsError, match="did you mean AGENT_PAYMENTS_READ_TIMEOUT"):
        settings_from({"AGENT_PAYMENTS_READ_TIMEOT": "1"})
    with pytest.raises(AgentSettingsError, match="did you mean AGENT_PAYMENTS__READ_TIMEOUT"):
        settings_from({"AGENT_PAYMENTS__READ_TIMEOT": "1"})
    # Azure Pipelines and CI runners set AGENT_* variables of their own: not a word about them.
    azure = {
        f"AGENT_{name}": "x"
        for name in (
            "NAME",
            "OS",
            "ID",
            "OSARCHITECTURE",
            "MACHINENAME",
            "HOMEDIRECTORY",
            "BUILDDIRECTORY",
            "WORKFOLDER",
            "TEMPDIRECTORY",
            "TOOLSDIRECTORY",
            "JOBNAME",
            "JOBSTATUS",
            "VERSION",
            "CONTAINERMAPPING",
            "READONLYVARIABLES",
            "ACCEPTTEEEULA",
        )
    }
    with caplog.at_level(logging.DEBUG, logger="starlette_agent"):
        assert settings_from(azure) == {}
    assert warnings_in(caplog) == []


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("AGENT_MAX_RETRIES", "max_redirects, AGENT_MAX_REDIRECTS"),
        ("AGENT_PAYMENTS_SOCKETS", "max_sockets, AGENT_PAYMENTS_MAX_SOCKETS"),
        ("AGENT_PAYMENTS_PROXY_ADDRESS", "local_address, AGENT_PAYMENTS_PROXY_LOCAL_ADDRESS"),
        ("AGENT_RETRY_TIMEOUT_MS", "read_timeout, AGENT_READ_TIMEOUT"),
    ],
)
def test_a_variable_that_looks_like_ours_logs_one_warning_naming_the_closest_option(
    variable: str, closest: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="starlette_agent"):
        registry = AgentRegistry.from_settings(
            Config(environ={variable: "3", "AGENT_MAX_FREE_SOCKETS": "1"})
        )
    assert registry.settings() == AgentOptions(max_free_sockets=1)
    assert warnings_in(caplog) == [
        f"{variable} is no agent option and is ignored (the closest is {closest}); "
        "strict=True makes this an error"
    ]


@pytest.mark.parametrize("variable", ["AGENT_NAME", "AGENT_MAX_RETRIES", "AGENT_PAYMENTS__X"])
def test_strict_makes_every_foreign_variable_an_error(variable: str) -> None:
    config = Config(environ={variable: "1"})
    with pytest.raises(AgentSettingsError, match=rf"{variable} \(strict=True\) is no agent option"):
        AgentRegistry.from_settings(config, strict=True)
    with pytest.raises(AgentSettingsError, match=variable):
        AgentOptions.from_env(config, strict=True)
    AgentRegistry.from_settings(config)  # not strict: only a warning, or nothing


@pytest.mark.parametrize(
    ("variable", "fragments"),
    [
        ("AGENT_TIMEOUT", ["Node's timeout", "AGENT_READ_TIMEOUT or AGENT_IDLE_TIMEOUT"]),
        (
            "AGENT_PAYMENTS_TIMEOUT",
            ["AGENT_PAYMENTS_READ_TIMEOUT or AGENT_PAYMENTS_IDLE_TIMEOUT"],
        ),
        ("AGENT_KEEPALIVE", ["keepAlive is Node's name for keep_alive", "set AGENT_KEEP_ALIVE"]),
        ("AGENT_MAXSOCKETS", ["maxSockets is Node's name for max_sockets", "AGENT_MAX_SOCKETS"]),
        ("AGENT_PAYMENTS__MAXSOCKETS", ["set AGENT_PAYMENTS__MAX_SOCKETS"]),
        ("AGENT_MAX_TOTALSOCKETS", ["set AGENT_MAX_TOTAL_SOCKETS"]),
        ("AGENT_LOCALADDRESS", ["set AGENT_LOCAL_ADDRESS"]),
    ],
)
def test_node_option_names_in_variables_name_the_option_to_use(
    variable: str, fragments: list[str]
) -> None:
    with pytest.raises(AgentSettingsError) as caught:
        AgentRegistry.from_settings(Config(environ={variable: "5000"}))
    assert caught.value.variable == variable
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_an_invalid_agent_name_is_blamed_not_the_option() -> None:
    with pytest.raises(AgentSettingsError) as caught:
        AgentRegistry.from_settings(Config(environ={"AGENT_PAYMENTS-API_MAX_SOCKETS": "3"}))
    message = str(caught.value)
    assert "agent named 'PAYMENTS-API', which is not a valid agent name" in message
    assert "write AGENT_PAYMENTS_API__MAX_SOCKETS" in message
    assert "did you mean" not in message
    with pytest.raises(AgentSettingsError, match="for the default agent, write AGENT_MAX_SOCKETS"):
        settings_from({"AGENT___MAX_SOCKETS": "3"})


@pytest.mark.parametrize("prefix", ["OUTBOUND", "outbound", "_", ""])
def test_a_prefix_without_a_trailing_underscore_is_blamed(prefix: str) -> None:
    config = Config(environ={"OUTBOUND_MAX_SOCKETS": "3"})
    with pytest.raises(InvalidOption, match=r"prefix must be letters ending in '_'") as caught:
        AgentRegistry.from_settings(config, prefix=prefix)
    if prefix.strip("_"):
        assert f"write prefix={prefix + '_'!r}" in str(caught.value)
    with pytest.raises(InvalidOption, match="prefix"):
        AgentOptions.from_env(config, prefix=prefix)
    assert AgentRegistry.from_settings(config, prefix="OUTBOUND_").settings() == AgentOptions(
        max_sockets=3
    )


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AGENT_MAX_SOCKETS=4\nAGENT_PAYMENTS__MAX_SOCKETS='2'\n# comment\n")
    found = settings_from({"AGENT_MAX_SOCKETS": "8"}, env_file)
    assert found["default"] == AgentOptions(max_sockets=8)
    assert found["payments"] == AgentOptions(max_sockets=2)


@pytest.mark.parametrize("key", ["AGENT_NAME", "AGENT_MAX_RETRIES"])
def test_unknown_agent_variable_in_env_file_is_an_error(tmp_path: Path, key: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"{key}=mine\n")
    with pytest.raises(AgentSettingsError, match=rf"{key} in the \.env file") as caught:
        settings_from({}, env_file)
    assert caught.value.variable == key


def test_config_env_prefix_and_custom_prefix_are_honoured() -> None:
    config = Config(
        environ={"APP_AGENT_MAX_SOCKETS": "3", "AGENT_MAX_SOCKETS": "9"}, env_prefix="APP_"
    )
    assert read_agent_settings(config)["default"] == AgentOptions(max_sockets=3)
    custom = Config(environ={"HTTP_POOL_SEARCH_MAX_SOCKETS": "5"})
    assert read_agent_settings(custom, prefix="HTTP_POOL_") == {
        "search": AgentOptions(max_sockets=5)
    }


def test_from_env_reads_one_agent_with_defaults_for_the_rest() -> None:
    config = Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "2"})
    assert AgentOptions.from_env(config, name="payments") == AgentOptions(max_sockets=2)
    assert AgentOptions.from_env(config, name="search") == AgentOptions()


# ------------------------------------------------------------------ validated once


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[AgentOptions]:
    """Every AgentOptions validated from now on."""
    seen: list[AgentOptions] = []
    validate = AgentOptions.__post_init__

    def counting(self: AgentOptions) -> None:
        seen.append(self)
        validate(self)

    monkeypatch.setattr(AgentOptions, "__post_init__", counting)
    return seen


@pytest.mark.anyio
async def test_an_agent_built_from_the_environment_is_validated_once(
    validations: list[AgentOptions],
) -> None:
    config = Config(
        environ={"AGENT_PAYMENTS_MAX_SOCKETS": "2", "AGENT_PAYMENTS_SCHEDULING": "fifo"}
    )
    async with AgentRegistry.from_settings(config) as registry:
        payments, default = registry.get("payments"), registry.get("default")
    assert validations == [payments.config]  # the default agent's options were made at import
    assert (payments.config.max_sockets, payments.config.scheduling) == (2, "fifo")
    assert default.config == AgentOptions()

    validations.clear()
    async with AgentOptions.from_env(config, name="payments").create_agent() as agent:
        assert agent.config.max_sockets == 2
    assert validations == [agent.config]


@pytest.mark.anyio
async def test_code_options_and_variables_make_one_validation_per_source(
    validations: list[AgentOptions],
) -> None:
    config = Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "2"})
    registry = AgentRegistry.from_settings(config, agents={"payments": {"pool_timeout": 3.0}})
    assert len(validations) == 2  # the mapping in code, then the variables over it
    async with registry:
        payments = registry.get("payments")
    assert len(validations) == 2  # creating the agent validated nothing again
    assert payments.config == AgentOptions(max_sockets=2, pool_timeout=3.0)


# ------------------------------------------------------------------ options as values


def test_options_are_values() -> None:
    options = AgentOptions(max_sockets=2, scheduling="fifo")
    assert repr(options) == "AgentOptions(max_sockets=2, scheduling='fifo')"
    assert options.replace(max_sockets=3) == AgentOptions(max_sockets=3, scheduling="fifo")
    assert options.replace() is options
    assert options == AgentOptions(scheduling="fifo", max_sockets=2)
    assert hash(options) == hash(AgentOptions(scheduling="fifo", max_sockets=2))
    with pytest.raises(AttributeError):
        options.max_sockets = 3  # type: ignore[misc]


@pytest.mark.anyio
async def test_create_agent_makes_a_fresh_agent_with_these_options() -> None:
    options = AgentOptions(max_sockets=2, idle_timeout=None)
    first, second = options.create_agent(), options.create_agent()
    try:
        assert first is not second
        assert first.config is options
        assert first.config.idle_timeout is None
    finally:
        await first.aclose()
        await second.aclose()
