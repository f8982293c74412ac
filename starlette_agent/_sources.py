"""What an ``AgentMiddleware`` may be given, checked once, and turned into the registry it opens.

Every source becomes one ``AgentRegistry``, the only owner of the agents' lifecycle: a registry
as is; ``AgentOptions`` (also spelt ``AgentSettings``), a zero-argument factory or an ``Agent``
instance as that registry's ``"default"``; nothing, or a name alone, the running event loop's
global agent (``global_agent`` as a recipe: lent, shared with every other user of that loop).
Errors name the option and the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeAlias, TypeGuard

from ._agent import Agent
from ._errors import InvalidOption, InvalidOptionType
from ._global import global_agent
from ._options import AgentOptions
from ._registry import AgentRegistry
from ._settings import DEFAULT_NAME

__all__ = ["AgentRecipe", "checked_shutdown_timeout", "registry_of"]

#: What builds (or is) one agent: options or a factory make a fresh one at each startup.
AgentRecipe: TypeAlias = "Agent | AgentOptions | Callable[[], Agent]"


def is_recipe(agent: object) -> TypeGuard[AgentRecipe]:
    return isinstance(agent, Agent | AgentOptions) or (
        callable(agent) and not isinstance(agent, str)
    )


def registry_of(agent: object, registry: object) -> AgentRegistry:
    """The one registry a middleware given ``agent=`` and ``registry=`` opens."""
    if not (is_recipe(agent) or agent is None or isinstance(agent, str)):
        raise InvalidOptionType(
            "AgentMiddleware agent must be an Agent, AgentOptions, a zero-argument factory "
            f"returning an Agent, an agent name or None, got {agent!r}"
        )
    if registry is None:
        return AgentRegistry({DEFAULT_NAME: agent if is_recipe(agent) else global_agent})
    if not isinstance(registry, AgentRegistry):
        raise InvalidOptionType(
            f"AgentMiddleware registry must be an AgentRegistry, got {registry!r}"
        )
    if is_recipe(agent):
        raise InvalidOption(
            "AgentMiddleware takes agent=<Agent, options or factory> or registry=, not both; to "
            "add an agent to a registry, write AgentRegistry({'default': ..., ...})"
        )
    if isinstance(agent, str):
        registry.check_name(agent, where="AgentMiddleware(agent=...)")
    return registry


def checked_shutdown_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout < math.inf
    ):
        raise InvalidOption(
            "AgentMiddleware shutdown_timeout must be a finite number of seconds >= 0 or "
            f"None, got {timeout!r}"
        )
    return float(timeout)
