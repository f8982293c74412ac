"""AgentRegistry: names, settings layered over code, and counted opening and closing."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest
from servers import wait_until
from starlette.config import Config

from starlette_agent import Agent, AgentClosed, AgentError, AgentOptions
from starlette_agent._registry import AgentRegistry
from starlette_agent._settings import AgentSettings
from starlette_agent._setup_errors import AgentNotConfigured, AgentSettingsError, UnknownAgentName


def test_default_is_always_there_and_names_ignore_case() -> None:
    registry = AgentRegistry({"Payments": {"max_sockets": 2}})
    assert registry.names == ("default", "payments")
    assert "PAYMENTS" in registry
    assert registry.settings("payments") == AgentSettings(max_sockets=2)
    assert registry.settings() == AgentSettings()


def test_bad_entries_are_rejected_when_the_registry_is_built() -> None:
    with pytest.raises(AgentSettingsError, match="max_sockets must be >= 1"):
        AgentRegistry({"payments": {"max_sockets": 0}})
    with pytest.raises(TypeError, match="agent 'payments' must be an Agent, AgentOptions"):
        AgentRegistry({"payments": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="agent name must be letters"):
        AgentRegistry({"pay-ments": {}})


def test_unknown_name_lists_the_known_ones() -> None:
    registry = AgentRegistry({"payments": {}})
    with pytest.raises(UnknownAgentName) as caught:
        registry.get("paymnts")
    assert str(caught.value) == "unknown agent name 'paymnts'; known names: 'default', 'payments'"
    assert caught.value.known == ("default", "payments")


def test_from_settings_layers_variables_over_code() -> None:
    config = Config(
        environ={
            "AGENT_PAYMENTS_MAX_SOCKETS": "2",
            "AGENT_SEARCH_READ_TIMEOUT": "3",
            "AGENT_MAX_FREE_SOCKETS": "1",
        }
    )
    registry = AgentRegistry.from_settings(
        config, agents={"payments": {"max_sockets": 5, "scheduling": "fifo"}}
    )
    assert registry.names == ("default", "payments", "search")
    assert registry.settings("payments") == AgentSettings(max_sockets=2, scheduling="fifo")
    assert registry.settings("search") == AgentSettings(read_timeout=3.0)
    assert registry.settings("default") == AgentSettings(max_free_sockets=1)


@pytest.mark.anyio
async def test_variables_cannot_reconfigure_an_agent_instance() -> None:
    async with Agent() as agent:
        with pytest.raises(AgentSettingsError, match="AGENT_PAYMENTS_MAX_SOCKETS configure"):
            AgentRegistry.from_settings(
                Config(environ={"AGENT_PAYMENTS_MAX_SOCKETS": "2"}),
                agents={"payments": agent},
            )


@pytest.mark.anyio
async def test_agents_exist_only_while_open_and_each_open_is_counted() -> None:
    registry = AgentRegistry({"payments": {"max_sockets": 2}})
    with pytest.raises(AgentNotConfigured, match="not open"):
        registry.get("payments")

    registry.open()
    registry.open()
    agent = registry.get("payments")
    assert agent.config.max_sockets == 2
    assert repr(registry) == "<AgentRegistry [default, payments] open by 2>"

    await registry.close()
    assert not agent.closed  # one app still uses it
    assert registry.get("payments") is agent
    await registry.close()
    assert agent.closed
    assert repr(registry) == "<AgentRegistry [default, payments] closed>"
    with pytest.raises(RuntimeError, match="more often than open") as over_closed:
        await registry.close()
    assert isinstance(over_closed.value, AgentError)

    async with registry:  # reopening creates fresh agents
        assert registry.get("payments") is not agent
        assert not registry.get("payments").closed


@pytest.mark.anyio
async def test_an_agent_instance_in_two_registries_closes_with_the_last() -> None:
    shared = Agent()
    one = AgentRegistry({"default": shared})
    two = AgentRegistry({"default": shared})
    async with one:
        async with two:
            assert one.get() is two.get() is shared
        assert not shared.closed  # registry one still holds it
    assert shared.closed
    with pytest.raises(AgentClosed, match="already closed") as reopened:
        one.open()
    assert isinstance(reopened.value, RuntimeError)
    assert "AgentOptions" in str(reopened.value)  # the error says what to give instead
    assert not one.is_open


@pytest.mark.anyio
async def test_an_instance_taken_again_during_the_graceful_wait_stays_open(server: Any) -> None:
    agent = Agent()
    first, second = AgentRegistry({"default": agent}), AgentRegistry({"default": agent})
    first.open()
    statuses: list[int] = []

    async def in_flight() -> None:
        statuses.append((await agent.get(f"{server.url}/slow?delay=0.3")).status)

    async def second_app_starts() -> None:
        await anyio.sleep(0.1)  # while the first app's shutdown waits for the request
        second.open()

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_flight)
        assert await wait_until(lambda: agent.stats().active == 1)
        tg.start_soon(second_app_starts)
        await first.close(shutdown_timeout=5)
    assert statuses == [200]
    assert not agent.closed  # the second app holds it now
    await second.close(shutdown_timeout=1)
    assert agent.closed


@pytest.mark.anyio
async def test_factories_and_options_build_a_fresh_agent_at_each_open() -> None:
    registry = AgentRegistry(
        {"default": AgentOptions(max_sockets=2), "built": lambda: Agent(max_sockets=3)}
    )
    assert registry.settings() == AgentSettings(max_sockets=2)
    assert registry.settings("built") is None  # a factory's options are its own
    seen = []
    for _ in range(2):
        async with registry:
            seen.append((registry.get(), registry.get("built")))
    assert [agent.config.max_sockets for pair in seen for agent in pair] == [2, 3, 2, 3]
    assert seen[0][0] is not seen[1][0] and seen[0][1] is not seen[1][1]
    assert all(agent.closed for pair in seen for agent in pair)


def test_factories_cannot_be_configured_by_variables() -> None:
    with pytest.raises(AgentSettingsError, match="an Agent instance or a factory"):
        AgentRegistry.from_settings(
            Config(environ={"AGENT_BUILT_MAX_SOCKETS": "2"}), agents={"built": Agent}
        )


@pytest.mark.anyio
async def test_graceful_close_waits_for_the_agents_own_wait_idle() -> None:
    released = anyio.Event()

    class BusyUntilReleased(Agent):
        """Idle only when the test says so, whatever its stats show."""

        async def wait_idle(self) -> None:
            await released.wait()

    agent = BusyUntilReleased()
    registry = AgentRegistry({"default": agent})
    registry.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(registry.close, shutdown_timeout=30))
        await anyio.sleep(0.05)
        assert not agent.closed  # still waiting for wait_idle(), not for stats() to say 0
        released.set()
    assert agent.closed


@pytest.mark.anyio
async def test_graceful_close_stops_waiting_after_shutdown_timeout() -> None:
    class NeverIdle(Agent):
        async def wait_idle(self) -> None:
            await anyio.sleep_forever()

    agent = NeverIdle()
    registry = AgentRegistry({"default": agent})
    registry.open()
    with anyio.fail_after(5):
        await registry.close(shutdown_timeout=0.05)
    assert agent.closed
