"""AgentSettings and AGENT_* variables: parsing, naming, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.config import Config

from starlette_agent._registry import AgentRegistry
from starlette_agent._settings import AgentSettings, read_agent_settings
from starlette_agent._setup_errors import AgentSettingsError


def settings_from(env: dict[str, str], env_file: Path | None = None) -> dict[str, AgentSettings]:
    return read_agent_settings(Config(env_file, environ=env))


def test_default_and_named_agents_from_variables() -> None:
    found = settings_from(
        {
            "AGENT_MAX_SOCKETS": "10",
            "AGENT_PAYMENTS_MAX_SOCKETS": "2",
            "AGENT_PAYMENTS_IDLE_TIMEOUT": "none",
            "AGENT_PAYMENTS_SCHEDULING": "FIFO",
            "AGENT_SEARCH_KEEP_ALIVE": "off",
            "UNRELATED": "1",
        }
    )
    assert found == {
        "default": AgentSettings(max_sockets=10),
        "payments": AgentSettings(max_sockets=2, idle_timeout=None, scheduling="fifo"),
        "search": AgentSettings(keep_alive=False),
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
    assert found["default"] == AgentSettings(max_total_sockets=7, keep_alive_timeout_buffer=0.5)
    assert found["my_api"] == AgentSettings(max_total_sockets=3, max_requests_per_socket=100)
    assert set(found) == {"default", "my_api"}


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("AGENT_MAX_SOCKETS", "ten", "max_sockets must be an integer"),
        ("AGENT_PAYMENTS_MAX_SOCKETS", "ten", "max_sockets must be an integer"),
        ("AGENT_MAX_SOCKETS", "0", "max_sockets must be >= 1"),
        ("AGENT_MAX_SOCKETS", "2.5", "max_sockets must be an integer"),
        ("AGENT_MAX_FREE_SOCKETS", "none", "max_free_sockets must be an integer"),
        ("AGENT_READ_TIMEOUT", "-1", "read_timeout must be a finite number"),
        ("AGENT_PAYMENTS_CONNECT_TIMEOUT", "soon", "connect_timeout must be a number"),
        ("AGENT_IDLE_TIMEOUT", "inf", "idle_timeout must be a finite number"),
        ("AGENT_SCHEDULING", "random", "scheduling must be 'lifo' or 'fifo'"),
        ("AGENT_KEEP_ALIVE", "maybe", "keep_alive must be true or false"),
        ("AGENT_SSL_CONTEXT", "x", "ssl_context cannot be set from the environment"),
        ("AGENT_PAYMENTS_CONNECTOR", "x", "connector cannot be set from the environment"),
        ("AGENT_HEADERS_TIMEOUT", "-1", "headers_timeout must be a finite number"),
        ("AGENT_HEADERS_TIMEOUT", "soon", "headers_timeout must be a number"),
        ("AGENT_BLOCK_PRIVATE_NETWORKS", "maybe", "block_private_networks must be true or false"),
        ("AGENT_ALLOWED_NETWORKS", "10.0.0.1/8", "'10.0.0.1/8' is not a network"),
        ("AGENT_ALLOWED_NETWORKS", "10.0.0.0/8,localhost", "'localhost' is not a network"),
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
    assert found["default"] == AgentSettings(
        block_private_networks=True,
        allowed_networks=["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"],
        headers_timeout=5.0,
    )
    assert found["default"].options.allowed_networks == ("10.0.0.0/8", "fd00::/8", "127.0.0.1/32")
    assert found["payments"] == AgentSettings(headers_timeout=None)
    assert repr(found["payments"]) == "AgentSettings(headers_timeout=None)"


def test_bad_values_fail_registry_construction_at_startup() -> None:
    with pytest.raises(AgentSettingsError, match="AGENT_PAYMENTS_MAX_SOCKETS='ten'"):
        AgentRegistry.from_settings(Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "ten"}))


def test_misspelt_option_is_an_error_but_foreign_variables_are_ignored() -> None:
    with pytest.raises(AgentSettingsError, match="AGENT_MAX_SOCKET names no agent option"):
        settings_from({"AGENT_MAX_SOCKET": "1"})
    with pytest.raises(AgentSettingsError, match="'read_timeout'"):
        settings_from({"AGENT_PAYMENTS_READ_TIMEOT": "1"})
    # Azure Pipelines and others set AGENT_* variables of their own.
    assert settings_from({"AGENT_NAME": "build-7", "AGENT_OS": "Linux", "AGENT_ID": "3"}) == {}


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AGENT_MAX_SOCKETS=4\nAGENT_PAYMENTS_MAX_SOCKETS='2'\n# comment\n")
    found = settings_from({"AGENT_MAX_SOCKETS": "8"}, env_file)
    assert found["default"] == AgentSettings(max_sockets=8)
    assert found["payments"] == AgentSettings(max_sockets=2)


def test_unknown_agent_variable_in_env_file_is_an_error(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AGENT_NAME=mine\n")
    with pytest.raises(AgentSettingsError, match=r"AGENT_NAME in the \.env file"):
        settings_from({}, env_file)


def test_config_env_prefix_and_custom_prefix_are_honoured() -> None:
    config = Config(
        environ={"APP_AGENT_MAX_SOCKETS": "3", "AGENT_MAX_SOCKETS": "9"}, env_prefix="APP_"
    )
    assert read_agent_settings(config)["default"] == AgentSettings(max_sockets=3)
    custom = Config(environ={"HTTP_POOL_SEARCH_MAX_SOCKETS": "5"})
    assert read_agent_settings(custom, prefix="HTTP_POOL_") == {
        "search": AgentSettings(max_sockets=5)
    }


def test_same_option_set_twice_for_one_agent_is_an_error() -> None:
    with pytest.raises(AgentSettingsError, match="both set 'max_sockets' of agent 'default'"):
        settings_from({"AGENT_MAX_SOCKETS": "1", "AGENT_DEFAULT_MAX_SOCKETS": "2"})


def test_from_env_reads_one_agent_with_defaults_for_the_rest() -> None:
    config = Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "2"})
    assert AgentSettings.from_env(config, name="payments") == AgentSettings(max_sockets=2)
    assert AgentSettings.from_env(config, name="search") == AgentSettings()


def test_agent_settings_validate_like_the_agent_constructor() -> None:
    with pytest.raises(
        AgentSettingsError, match=r"unknown agent option 'max_socket'.*'max_sockets'"
    ):
        AgentSettings(max_socket=1)
    with pytest.raises(AgentSettingsError, match="max_sockets must be an integer") as caught:
        AgentSettings(max_sockets="2")
    assert caught.value.variable == "max_sockets"
    with pytest.raises(AgentSettingsError, match="scheduling must be 'lifo' or 'fifo'"):
        AgentSettings(scheduling="random")


def test_agent_settings_are_values() -> None:
    settings = AgentSettings(max_sockets=2, scheduling="fifo")
    assert repr(settings) == "AgentSettings(max_sockets=2, scheduling='fifo')"
    assert settings.replace(max_sockets=3) == AgentSettings(max_sockets=3, scheduling="fifo")
    assert settings == AgentSettings(scheduling="fifo", max_sockets=2)
    assert hash(settings) == hash(AgentSettings(scheduling="fifo", max_sockets=2))
    with pytest.raises(AttributeError):
        settings.options = settings.options  # type: ignore[misc]


@pytest.mark.anyio
async def test_create_agent_makes_a_fresh_agent_with_these_options() -> None:
    settings = AgentSettings(max_sockets=2, idle_timeout=None)
    first, second = settings.create_agent(), settings.create_agent()
    try:
        assert first is not second
        assert first.config.max_sockets == 2
        assert first.config.idle_timeout is None
    finally:
        await first.aclose()
        await second.aclose()
