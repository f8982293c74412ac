"""Named agents for the apps of a process: what each name means, and the agents while open.

An ``AgentRegistry`` maps names to *recipes* (``AgentSettings``, or an ``Agent`` instance given
in code). It creates no agent until it is opened, so a registry built at import time is safe
under ``uvicorn --workers N``: each worker opens its own agents in its own lifespan.

Opening is counted: every app lifespan that uses the registry opens it at startup and closes it
at shutdown, and only the first open creates agents and only the last close closes them.
Agent instances given in code are leased (``_lifecycle``), since the same instance may also be
handed to another app directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.config import Config

from . import _lifecycle
from ._errors import InvalidOption, InvalidOptionType
from ._options import DEFAULT_OPTIONS
from ._settings import (
    DEFAULT_NAME,
    DEFAULT_PREFIX,
    AgentSettings,
    normalise_name,
    read_variables,
)
from ._setup_errors import AgentNotConfigured, AgentSettingsError, UnknownAgentName

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["AgentRegistry", "AgentSource"]

#: What a registry entry may be: an agent to share, settings, or the settings' keyword arguments.
AgentSource: TypeAlias = "Agent | AgentSettings | Mapping[str, Any]"

DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class AgentRegistry:
    """Named agents, created when the first app using them starts and closed after the last stops.

    ``AgentRegistry({"default": {"max_sockets": 10}, "payments": AgentSettings(max_sockets=2)})``.
    A ``"default"`` entry with default options is added when none is given. Names are matched
    case-insensitively (``AGENT_PAYMENTS_*`` configures ``"payments"``).
    """

    def __init__(self, agents: Mapping[str, AgentSource] | None = None) -> None:
        recipes: dict[str, Agent | AgentSettings] = {}
        for name, source in (agents or {}).items():
            key = normalise_name(name)
            if key in recipes:
                raise InvalidOption(f"agent name {name!r} is given twice (names ignore case)")
            recipes[key] = _recipe(key, source)
        recipes.setdefault(DEFAULT_NAME, DEFAULT_OPTIONS)
        self._recipes = recipes
        self._opens = 0
        self._agents: dict[str, Agent] = {}
        self._created: list[Agent] = []  # agents this registry made, and so closes
        self._leased: list[Agent] = []  # instances given in code, leased

    @classmethod
    def from_settings(
        cls,
        config: Config | None = None,
        *,
        agents: Mapping[str, AgentSource] | None = None,
        prefix: str = DEFAULT_PREFIX,
        strict: bool = False,
    ) -> AgentRegistry:
        """A registry whose agents are configured by ``AGENT_*`` variables of ``config``.

        ``config`` is a ``starlette.config.Config`` (environment and ``.env`` file), by default
        the process environment. ``agents`` declares agents in code; variables override their
        options one by one, and each agent's options are validated once. Every bad variable is
        rejected here, at startup, with its name; ``strict=True`` also rejects every variable
        starting with ``prefix`` that sets no option (always done for the ``.env`` file).
        """
        base = cls(agents)
        recipes = dict(base._recipes)
        for name, found in read_variables(config, prefix=prefix, strict=strict).items():
            recipe = recipes.get(name, DEFAULT_OPTIONS)
            if not isinstance(recipe, AgentSettings):
                variables = ", ".join(found.variables)
                raise AgentSettingsError(
                    f"{variables} configure agent {name!r}, but that agent is an Agent instance "
                    f"given in code, whose options are fixed; give AgentSettings instead",
                    variable=variables,
                    value=None,
                )
            recipes[name] = found.apply(recipe)
        return cls(recipes)

    @property
    def names(self) -> tuple[str, ...]:
        """The agent names, ``"default"`` first."""
        return (DEFAULT_NAME, *sorted(n for n in self._recipes if n != DEFAULT_NAME))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._recipes

    def settings(self, name: str = DEFAULT_NAME) -> AgentSettings | None:
        """The settings agent ``name`` is created with; None if it is an instance given in code."""
        recipe = self._recipes.get(self.check_name(name))
        return recipe if isinstance(recipe, AgentSettings) else None

    def check_name(self, name: str, *, where: str = "") -> str:
        """The registry key for ``name``; ``UnknownAgentName`` (listing the known names) if none."""
        key = name.lower()
        if key not in self._recipes:
            raise UnknownAgentName(name, self.names, where=where)
        return key

    @property
    def is_open(self) -> bool:
        return self._opens > 0

    def get(self, name: str = DEFAULT_NAME) -> Agent:
        """The open agent called ``name``.

        Raises ``UnknownAgentName`` for a name the registry does not define, and
        ``AgentNotConfigured`` while the registry is not open (no app using it has started).
        """
        agent = self._agents.get(name)
        if agent is not None:
            return agent
        key = self.check_name(name)
        if key in self._agents:
            return self._agents[key]
        raise AgentNotConfigured(
            f"agent {name!r} is not open: its registry opens when an app using it starts "
            f"(the ASGI lifespan), or inside `async with registry:`"
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take one use of the registry; the first creates its agents.

        Synchronous on purpose: creating agents opens no sockets, and a count changed without an
        await in between cannot race another app's startup.
        """
        if self._opens == 0:
            self._start()
        self._opens += 1

    async def close(self, *, shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Give back one use; the last waits up to ``shutdown_timeout`` s and closes the agents."""
        if self._opens == 0:
            raise AgentNotConfigured("AgentRegistry.close() called more often than open()")
        self._opens -= 1
        if self._opens:
            return
        # Forget the agents first: an app that starts while these close gets fresh ones.
        created, leased = self._created, self._leased
        self._agents, self._created, self._leased = {}, [], []
        to_close = created + _lifecycle.release(leased)
        await _lifecycle.close_gracefully(to_close, timeout=shutdown_timeout)

    async def __aenter__(self) -> AgentRegistry:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _start(self) -> None:
        agents: dict[str, Agent] = {}
        created: list[Agent] = []
        leased: list[Agent] = []
        try:
            for name, recipe in self._recipes.items():
                if isinstance(recipe, AgentSettings):
                    agents[name] = recipe.create_agent()
                    created.append(agents[name])
                else:
                    _lifecycle.acquire(recipe, owner=f"AgentRegistry entry {name!r}")
                    agents[name] = recipe
                    leased.append(recipe)
        except BaseException:
            _lifecycle.release(leased)  # created agents opened no sockets yet; nothing to close
            raise
        self._agents, self._created, self._leased = agents, created, leased

    def __repr__(self) -> str:
        state = f"open by {self._opens}" if self._opens else "closed"
        return f"<AgentRegistry [{', '.join(self.names)}] {state}>"


def _recipe(name: str, source: object) -> Agent | AgentSettings:
    from ._agent import Agent

    if isinstance(source, Agent | AgentSettings):
        return source
    if isinstance(source, Mapping):
        try:
            return AgentSettings(**source)
        except InvalidOption as exc:
            option = exc.option or ""
            raise AgentSettingsError(
                f"agent {name!r}: {exc}", variable=option, value=source.get(option)
            ) from exc
    raise InvalidOptionType(
        f"agent {name!r} must be an Agent, AgentSettings or a mapping of Agent options, "
        f"got {source!r}"
    )
