"""Errors of the Starlette integration: configuration and wiring, not traffic.

They are raised at startup (a bad ``AGENT_*`` variable, an unknown agent name) or when a handler
asks for an agent the app was not set up to give. Each is an ``AgentError`` and also the builtin a
caller would naturally catch (``ValueError``, ``LookupError``, ``RuntimeError``, and
``AttributeError`` for ``request.state.agent``), and its message says what to change.
"""

from __future__ import annotations

from ._errors import AgentError, InvalidOption

__all__ = ["AgentNotConfigured", "AgentSettingsError", "UnknownAgentName"]


class AgentSettingsError(InvalidOption):
    """An agent option from the settings (an ``AGENT_*`` variable or a mapping) is invalid.

    ``variable`` is the environment variable (or option name) at fault, ``value`` its raw value.
    """

    def __init__(self, message: str, *, variable: str, value: object) -> None:
        super().__init__(message)
        self.variable = variable
        self.value = value


class UnknownAgentName(AgentError, LookupError):
    """An agent was asked for by a name its registry does not define.

    ``name`` is the name asked for, ``known`` the names the registry does define.
    """

    def __init__(self, name: str, known: tuple[str, ...], *, where: str = "") -> None:
        listed = ", ".join(repr(n) for n in known) or "none"
        suffix = f" (asked for by {where})" if where else ""
        super().__init__(f"unknown agent name {name!r}{suffix}; known names: {listed}")
        self.name = name
        self.known = known


class AgentNotConfigured(AgentError, RuntimeError, AttributeError):
    """A handler asked for an agent, but the app does not inject one (yet).

    Also an ``AttributeError``: ``request.state.agent`` raises it when no agent was injected, and
    ``getattr(request.state, "agent", None)`` must still answer None.
    """
