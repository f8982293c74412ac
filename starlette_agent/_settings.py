"""Agent options from code, the environment and ``.env`` files.

``AgentSettings`` is one agent's options, checked by ``AgentOptions`` (the same rules and messages
as the ``Agent`` constructor). ``read_agent_settings`` turns ``AGENT_*`` variables into named
settings:

    AGENT_MAX_SOCKETS=10                  -> agent "default", max_sockets=10
    AGENT_PAYMENTS_MAX_TOTAL_SOCKETS=2    -> agent "payments", max_total_sockets=2
    AGENT_PAYMENTS_IDLE_TIMEOUT=none      -> agent "payments", idle_timeout=None

Option names contain underscores, so a variable is split by matching its end against the known
option names, longest first (``..._MAX_TOTAL_SOCKETS`` is never read as an agent named
``..._MAX_TOTAL`` with an option ``SOCKETS``); what precedes the option is the agent's name.

Which variables are ours: ``AGENT_`` is a short prefix that other tools also use (Azure Pipelines
sets ``AGENT_NAME``, ``AGENT_OS``...). A variable that ends in no option name is therefore
ignored when it comes from the process environment, unless it looks like a misspelt option
(``AGENT_MAX_SOCKET``), which is an error; in the app's own ``.env`` file every ``AGENT_*`` key
must be an option. A bad value is an ``AgentSettingsError`` naming the variable and the value,
raised when the settings are read, at startup.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from starlette.config import Config

from ._errors import InvalidOption
from ._options import AgentOptions
from ._setup_errors import AgentSettingsError

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["DEFAULT_PREFIX", "AgentSettings", "read_agent_options", "read_agent_settings"]

DEFAULT_PREFIX = "AGENT_"
DEFAULT_NAME = "default"

OPTION_NAMES: tuple[str, ...] = AgentOptions.names()
_DEFAULTS = AgentOptions()
_NAME_RE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


class AgentSettings:
    """One agent's options, validated once, by the rules of the ``Agent`` constructor.

    ``AgentSettings(max_sockets=2, idle_timeout=None)`` takes the ``Agent`` keyword names; an
    unknown name or a bad value raises ``AgentSettingsError`` naming it. Settings are values:
    immutable, comparable, and they create a fresh ``Agent`` each time ``create_agent()`` is called
    (one per app lifespan, never at import time).
    """

    __slots__ = ("options",)

    options: AgentOptions

    def __init__(self, **options: Any) -> None:
        _reject_unknown_options(options, where="AgentSettings")
        try:
            validated = AgentOptions(**options)
        except (TypeError, ValueError) as exc:
            bad = _first_bad_option(options)
            raise AgentSettingsError(
                f"invalid agent option: {exc}", variable=bad, value=options.get(bad)
            ) from exc
        object.__setattr__(self, "options", validated)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AgentSettings is immutable; use .replace(**changes)")

    @classmethod
    def from_options(cls, options: AgentOptions) -> AgentSettings:
        """Wrap options that are already validated."""
        settings = cls.__new__(cls)
        object.__setattr__(settings, "options", options)
        return settings

    @classmethod
    def from_env(
        cls,
        config: Config | None = None,
        *,
        name: str = DEFAULT_NAME,
        prefix: str = DEFAULT_PREFIX,
    ) -> AgentSettings:
        """The settings of agent ``name`` from ``config`` (default: the process environment).

        Options no variable sets keep the ``Agent`` defaults.
        """
        found = read_agent_options(config, prefix=prefix)
        return cls(**found.get(normalise_name(name), {}))

    def replace(self, **changes: Any) -> AgentSettings:
        """A copy with ``changes`` applied, validated the same way."""
        _reject_unknown_options(changes, where="AgentSettings.replace")
        return AgentSettings(**{**self.as_kwargs(), **changes})

    def as_kwargs(self) -> dict[str, Any]:
        """Every option, as keyword arguments for ``Agent(**kwargs)``."""
        return {name: getattr(self.options, name) for name in OPTION_NAMES}

    def create_agent(self) -> Agent:
        """A new ``Agent`` with these options."""
        from ._agent import Agent

        return Agent(**self.as_kwargs())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AgentSettings):
            return NotImplemented
        return self.options == other.options

    def __hash__(self) -> int:
        return hash(self.options)

    def __repr__(self) -> str:
        changed = [
            f"{name}={getattr(self.options, name)!r}"
            for name in OPTION_NAMES
            if getattr(self.options, name) != getattr(_DEFAULTS, name)
        ]
        return f"AgentSettings({', '.join(changed)})"


def read_agent_settings(
    config: Config | None = None, *, prefix: str = DEFAULT_PREFIX
) -> dict[str, AgentSettings]:
    """Every agent that ``AGENT_*`` variables configure, by lower-case name.

    Reads ``config``'s environment and ``.env`` values (the environment wins, as in ``Config``),
    honouring ``config.env_prefix``. Raises ``AgentSettingsError`` naming the first bad variable.
    """
    return {
        name: AgentSettings.from_options(AgentOptions(**options))
        for name, options in read_agent_options(config, prefix=prefix).items()
    }


def read_agent_options(
    config: Config | None = None, *, prefix: str = DEFAULT_PREFIX
) -> dict[str, dict[str, Any]]:
    """Like ``read_agent_settings``, but only the options that variables set, already parsed.

    The registry layers these over the settings given in code.
    """
    config = config if config is not None else Config()
    full_prefix = config.env_prefix + prefix
    file_keys = set(config.file_values)
    keys = sorted({*config.environ, *file_keys})

    raw: dict[str, dict[str, tuple[str, str]]] = {}
    for key in keys:
        if not key.startswith(full_prefix):
            continue
        rest = key[len(full_prefix) :]
        parsed = _split_variable(rest)
        if parsed is None:
            from_file = key in file_keys and key not in config.environ
            _check_foreign_variable(key, rest, from_file=from_file)
            continue
        name, option = parsed
        # Config.get applies its own env_prefix again, so ask for the key without it.
        value = config.get(key[len(config.env_prefix) :])
        agent_options = raw.setdefault(name, {})
        if option in agent_options:
            other = agent_options[option][0]
            raise AgentSettingsError(
                f"{key} and {other} both set {option!r} of agent {name!r}; keep one",
                variable=key,
                value=value,
            )
        agent_options[option] = (key, value)

    return {name: _options_from_strings(name, values) for name, values in raw.items()}


# --------------------------------------------------------------------------- parsing


def _split_variable(rest: str) -> tuple[str, str] | None:
    """``"PAYMENTS_MAX_SOCKETS"`` -> ``("payments", "max_sockets")``; None if no option matches."""
    lowered = rest.lower()
    for option in _OPTIONS_LONGEST_FIRST:
        if lowered == option:
            return DEFAULT_NAME, option
        if lowered.endswith("_" + option):
            name = lowered[: -len(option) - 1]
            if _NAME_RE.fullmatch(name):
                return name, option
    return None


_OPTIONS_LONGEST_FIRST = tuple(sorted(OPTION_NAMES, key=len, reverse=True))


def _check_foreign_variable(key: str, rest: str, *, from_file: bool) -> None:
    """Reject an ``AGENT_*`` key that is no option if it is ours or looks like a typo of one."""
    words = rest.lower().split("_")
    tails = ["_".join(words[i:]) for i in range(len(words))]
    guesses = [
        match
        for tail in tails
        for match in difflib.get_close_matches(tail, OPTION_NAMES, n=1, cutoff=0.85)
    ]
    if guesses:
        raise AgentSettingsError(
            f"{key} names no agent option; did you mean an option named {guesses[0]!r}? "
            f"Known options: {', '.join(OPTION_NAMES)}",
            variable=key,
            value=None,
        )
    if from_file:
        raise AgentSettingsError(
            f"{key} in the .env file names no agent option; variables starting with the agent "
            f"prefix end in one of: {', '.join(OPTION_NAMES)}",
            variable=key,
            value=None,
        )


def _options_from_strings(name: str, values: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for option, (variable, raw) in values.items():
        parse = _PARSERS.get(option)
        if parse is None:
            raise AgentSettingsError(
                f"{variable}={raw!r}: {option} cannot be set from the environment; "
                f"pass it in code (AgentRegistry({{{name!r}: {{{option!r}: ...}}}}))",
                variable=variable,
                value=raw,
            )
        try:
            value = parse(raw)
        except ValueError as exc:
            message = f"{variable}={raw!r}: {option} {exc}"
            raise AgentSettingsError(message, variable=variable, value=raw) from None
        try:
            # One option at a time, so an error is pinned on the variable that caused it.
            AgentOptions(**{option: value})
        except (TypeError, ValueError) as exc:
            raise AgentSettingsError(
                f"{variable}={raw!r}: {exc}", variable=variable, value=raw
            ) from exc
        options[option] = value
    try:
        AgentOptions(**options)
    except (TypeError, ValueError) as exc:  # pragma: no cover - no cross-option rules today
        variables = ", ".join(variable for variable, _ in values.values())
        raise AgentSettingsError(f"{variables}: {exc}", variable=variables, value=None) from exc
    return options


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false (also yes/no, on/off, 1/0)")


def _parser_for(annotation: str) -> Callable[[str], Any] | None:
    """A string parser for one ``AgentOptions`` field, from its (string) annotation.

    Derived from the dataclass so a new option is picked up without a second list of types;
    objects (an SSL context, a connector) have no parser and are set in code only.
    """
    parts = [part.strip() for part in annotation.split("|")]
    optional = "None" in parts
    base = [part for part in parts if part != "None"]
    if len(base) != 1:
        return None
    convert: Callable[[str], Any]
    if base[0] == "bool":
        convert = _parse_bool
    elif base[0] == "int":
        convert = _parse_with(int, "an integer")
    elif base[0] == "float":
        convert = _parse_with(float, "a number")
    elif base[0] == "str":
        convert = str.strip
    elif base[0] == "tuple[str, ...]":
        convert = _parse_list
    elif base[0] == "Scheduling":
        convert = lambda raw: raw.strip().lower()  # noqa: E731
    else:
        return None
    if not optional:
        return convert

    def parse_optional(raw: str) -> Any:
        if raw.strip().lower() in _NONE:
            return None
        try:
            return convert(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}, or none") from None

    return parse_optional


def _parse_list(raw: str) -> tuple[str, ...]:
    """``"10.0.0.0/8, fd00::/8"`` -> ``("10.0.0.0/8", "fd00::/8")``; empty means none."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_with(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return kind(raw.strip())
        except ValueError:
            raise ValueError(f"must be {what}") from None

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    field.name: parser
    for field in fields(AgentOptions)
    if (parser := _parser_for(str(field.type))) is not None
}


# --------------------------------------------------------------------------- helpers


def normalise_name(name: str) -> str:
    """An agent's name as the registry keys it: lower case, ``[a-z0-9]`` words joined by ``_``."""
    lowered = name.lower()
    if not _NAME_RE.fullmatch(lowered):
        raise InvalidOption(
            f"agent name must be letters, digits and single underscores, got {name!r}"
        )
    return lowered


def _reject_unknown_options(options: Mapping[str, Any], *, where: str) -> None:
    for option in options:
        if option not in OPTION_NAMES:
            close = difflib.get_close_matches(option, OPTION_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AgentSettingsError(
                f"{where}: unknown agent option {option!r}{hint} "
                f"Known options: {', '.join(OPTION_NAMES)}",
                variable=option,
                value=options[option],
            )


def _first_bad_option(options: Mapping[str, Any]) -> str:
    for option, value in options.items():
        try:
            replace(_DEFAULTS, **{option: value})
        except (TypeError, ValueError):
            return option
    return ", ".join(options)  # pragma: no cover - only a cross-option rule gets here
