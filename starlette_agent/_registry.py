"""Named agents for the apps of a process, and the one count of who still uses them.

An ``AgentRegistry`` maps names to *recipes*: ``AgentOptions`` (also spelt ``AgentSettings``),
or a mapping of its keyword arguments, a zero-argument factory returning an ``Agent``, or an
``Agent`` instance given in code. It creates no agent until it is opened, so a registry built at
import time is safe under ``uvicorn --workers N``: each worker opens its own agents in its own
lifespan.

Theory of operation
-------------------
Every app lifespan that uses a registry opens it at startup and closes it at shutdown: the first
open makes the agents, the last close closes them, gracefully. This is the only count of who
uses an agent. ``AgentMiddleware`` turns whatever it is given (an instance, options, a factory,
a registry, or nothing: the event loop's global agent) into a registry, and opens and closes
registries only.

Options and factories build a fresh agent at each first open, which this registry owns, so an
app using them can stop and start again. An ``Agent`` instance cannot be rebuilt, and may be
handed to several apps and registries at once; it is owned by one registry of its own, its
*lender* (one per instance, found through ``_lenders``), which the registries holding the
instance open and close as an app would. The instance is therefore closed when the last of them
closes, and only once. The running event loop's global agent (``global_agent`` as a recipe) is
lent the same way.

Counts change synchronously (no await between reading and writing one), so apps starting or
stopping concurrently in one event loop cannot miss each other.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeAlias

from starlette.config import Config

from . import _lifecycle
from ._agent import Agent
from ._errors import AgentClosed, InvalidOption, InvalidOptionType
from ._global import global_agent
from ._options import DEFAULT_OPTIONS, AgentOptions
from ._settings import (
    DEFAULT_NAME,
    DEFAULT_PREFIX,
    normalise_name,
    read_variables,
)
from ._setup_errors import AgentNotConfigured, AgentSettingsError, UnknownAgentName

__all__ = ["AgentRegistry", "AgentSource"]

#: What a registry entry may be: an agent to share, a recipe for one, or options as a mapping.
AgentSource: TypeAlias = "Agent | AgentOptions | Mapping[str, Any] | Callable[[], Agent]"

DEFAULT_SHUTDOWN_TIMEOUT = 10.0

_RECIPE_TYPES = (
    "an Agent, AgentOptions, a mapping of Agent options or a zero-argument "
    "factory returning an Agent"
)


@dataclasses.dataclass(frozen=True, eq=False)
class _Instance:
    """The recipe of a lender: that very agent, for as long as it is not closed."""

    agent: Agent


_Recipe: TypeAlias = "AgentOptions | Agent | _Instance | Callable[[], Agent]"

#: The lender of each Agent instance in use, by id(instance). Weak: a lender no registry holds
#: is dropped, and as it holds its instance, an id here always belongs to a live instance.
_lenders: weakref.WeakValueDictionary[int, AgentRegistry] = weakref.WeakValueDictionary()


class AgentRegistry:
    """Named agents, created when the first app using them starts and closed after the last stops.

    ``AgentRegistry({"default": {"max_sockets": 10}, "payments": AgentOptions(max_sockets=2)})``.
    A ``"default"`` entry with default options is added when none is given. Names are matched
    case-insensitively (``AGENT_PAYMENTS_*`` configures ``"payments"``).
    """

    def __init__(self, agents: Mapping[str, AgentSource] | None = None) -> None:
        recipes: dict[str, _Recipe] = {}
        for name, source in (agents or {}).items():
            key = normalise_name(name)
            if key in recipes:
                raise InvalidOption(f"agent name {name!r} is given twice (names ignore case)")
            recipes[key] = _recipe(key, source)
        recipes.setdefault(DEFAULT_NAME, DEFAULT_OPTIONS)
        self._recipes = recipes
        self._opens = 0
        self._agents: dict[str, Agent] = {}
        self._owned: list[Agent] = []  # agents this registry made (or lends), and so closes
        self._lenders: list[AgentRegistry] = []  # of the instances it holds, to give back

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
        registry = cls(agents)
        recipes = registry._recipes
        for name, found in read_variables(config, prefix=prefix, strict=strict).items():
            recipe = recipes.get(name, DEFAULT_OPTIONS)
            if not isinstance(recipe, AgentOptions):
                variables = ", ".join(found.variables)
                raise AgentSettingsError(
                    f"{variables} configure agent {name!r}, but that agent is given in code as "
                    f"an Agent instance or a factory, whose options are fixed; give "
                    f"AgentOptions instead",
                    variable=variables,
                    value=None,
                )
            recipes[name] = found.apply(recipe)
        return registry

    @property
    def names(self) -> tuple[str, ...]:
        """The agent names, ``"default"`` first."""
        return (DEFAULT_NAME, *sorted(n for n in self._recipes if n != DEFAULT_NAME))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._recipes

    def settings(self, name: str = DEFAULT_NAME) -> AgentOptions | None:
        """The options agent ``name`` is created with; None for an instance or a factory."""
        recipe = self._recipes.get(self.check_name(name))
        return recipe if isinstance(recipe, AgentOptions) else None

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
        """Give back one use; the last waits up to ``shutdown_timeout`` s and closes the agents.

        Raises the first error a close raised, once every agent had its chance to close.
        """
        if self._opens == 0:
            raise AgentNotConfigured("AgentRegistry.close() called more often than open()")
        self._opens -= 1
        if self._opens:
            return
        # Forget the agents first: an app that starts while these close gets fresh ones (or,
        # for a lent instance, takes it back, and then it stays open).
        owned, lenders = self._owned, self._lenders
        self._agents, self._owned, self._lenders = {}, [], []
        errors = await _lifecycle.close_all(
            [
                functools.partial(
                    _lifecycle.close_gracefully, owned, timeout=shutdown_timeout, keep=self._holds
                ),
                *(
                    functools.partial(lender.close, shutdown_timeout=shutdown_timeout)
                    for lender in lenders
                ),
            ]
        )
        if errors:
            raise errors[0]

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
        owned: list[Agent] = []
        lenders: list[AgentRegistry] = []
        try:
            for name, recipe in self._recipes.items():
                if isinstance(recipe, Agent) or recipe is global_agent:
                    lender = _lender(recipe if isinstance(recipe, Agent) else global_agent())
                    lender.open()
                    lenders.append(lender)
                    agents[name] = lender.get()
                else:
                    agents[name] = _build(name, recipe)
                    owned.append(agents[name])
        except BaseException:
            # Nothing was sent through these agents yet: give the lenders back their count
            # without closing anything, and drop the agents made here (they hold no socket).
            for lender in lenders:
                lender._give_back_unused()
            raise
        self._agents, self._owned, self._lenders = agents, owned, lenders

    def _give_back_unused(self) -> None:
        self._opens -= 1
        if self._opens == 0:
            for lender in self._lenders:
                lender._give_back_unused()
            self._agents, self._owned, self._lenders = {}, [], []

    def _holds(self, agent: Agent) -> bool:
        return any(mine is agent for mine in self._agents.values())

    def __repr__(self) -> str:
        state = f"open by {self._opens}" if self._opens else "closed"
        return f"<AgentRegistry [{', '.join(self.names)}] {state}>"


def _lender(agent: Agent) -> AgentRegistry:
    """The registry that owns ``agent``, an instance handed over in code: one per instance."""
    lender = _lenders.get(id(agent))
    if lender is None:
        lender = _lenders[id(agent)] = AgentRegistry()
        lender._recipes = {DEFAULT_NAME: _Instance(agent)}
    return lender


def _build(name: str, recipe: _Recipe) -> Agent:
    """The agent ``recipe`` makes (or, for a lender, is); its errors say what to give instead."""
    if isinstance(recipe, AgentOptions):
        return recipe.create_agent()
    if isinstance(recipe, _Instance):
        if recipe.agent.closed:
            raise AgentClosed(
                f"an Agent instance that is already closed was handed over again: "
                f"{recipe.agent!r}. An instance serves one app lifespan; to start an app again, "
                f"give AgentMiddleware(agent=...) or AgentRegistry AgentOptions(...) or a "
                f"zero-argument factory (agent=lambda: Agent(...)) instead, which build a fresh "
                f"agent at each startup"
            )
        return recipe.agent
    assert callable(recipe)
    agent = recipe()
    if not isinstance(agent, Agent):
        raise InvalidOptionType(
            f"the factory of agent {name!r}, {recipe!r}, returned {agent!r}, not an Agent"
        )
    if agent.closed:
        raise AgentClosed(
            f"the factory of agent {name!r}, {recipe!r}, returned a closed agent; a factory "
            f"must build a new Agent at each call"
        )
    return agent


def _recipe(name: str, source: object) -> _Recipe:
    if isinstance(source, Agent | AgentOptions):
        return source
    if isinstance(source, Mapping):
        try:
            return AgentOptions(**source)
        except InvalidOption as exc:
            option = exc.option or ""
            raise AgentSettingsError(
                f"agent {name!r}: {exc}", variable=option, value=source.get(option)
            ) from exc
    if callable(source):
        return source
    raise InvalidOptionType(f"agent {name!r} must be {_RECIPE_TYPES}, got {source!r}")
