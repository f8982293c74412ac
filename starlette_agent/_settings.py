"""Agent options from ``AGENT_*`` variables: the process environment and ``.env`` files.

The grammar (the prefix is ``AGENT_`` unless given; a ``Config``'s ``env_prefix`` goes before it):

    AGENT_MAX_SOCKETS=10                -> agent "default", max_sockets=10
    AGENT_PAYMENTS_MAX_SOCKETS=2        -> agent "payments", max_sockets=2
    AGENT_PAYMENTS_API__MAX_SOCKETS=2   -> agent "payments_api": a double underscore ends the name
    AGENT_PAYMENTS_IDLE_TIMEOUT=none    -> agent "payments", idle_timeout=None

With single underscores the option is matched at the end of the variable, longest option name
first (``..._MAX_TOTAL_SOCKETS`` is never an agent ``..._MAX_TOTAL`` with an option ``SOCKETS``),
and what precedes it is the agent's name. Both forms setting one option of one agent is an error.
Values are parsed by the explicit table in ``_option_table`` and validated by ``AgentOptions``,
once per agent; ``AgentSettingsError`` names the variable and its value.

Which variables are ours. Other tools use the ``AGENT_`` prefix too (Azure Pipelines sets
``AGENT_NAME``, ``AGENT_OS``, ``AGENT_ID``; CI runners ``AGENT_TOOLSDIRECTORY``), so a variable
of the process environment that sets no option is judged by how surely it was meant for us:

* surely ours, an error: it ends in an option but its agent name is invalid
  (``AGENT_PAYMENTS-API_MAX_SOCKETS``), or it ends in one of Node's option names
  (``AGENT_TIMEOUT``, ``AGENT_PAYMENTS_MAXSOCKETS``) or in a near-certain misspelling of an
  option (``AGENT_MAX_SOCKET``); so is an option that can be set in code only;
* perhaps ours, one warning (logger ``starlette_agent``) naming the closest option: one of its
  words is a word of an option name (``AGENT_PAYMENTS_RETRY_SOCKETS``);
* otherwise another tool's, ignored.

In a ``.env`` file, which belongs to the app, and with ``strict=True``, every variable that
starts with the prefix must set an option.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.config import Config

from ._errors import InvalidOption, InvalidOptionType
from ._option_table import OPTION_TABLE, close_option, node_hint
from ._options import DEFAULT_NAME, DEFAULT_OPTIONS, DEFAULT_PREFIX, AgentOptions
from ._setup_errors import AgentSettingsError

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_PREFIX",
    "AgentSettings",
    "AgentVariables",
    "check_prefix",
    "normalise_name",
    "read_agent_options",
    "read_agent_settings",
    "read_variables",
]

#: The name the settings API had; the same type as ``AgentOptions``.
AgentSettings = AgentOptions

logger = logging.getLogger("starlette_agent")

_NAME_RE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_OPTIONS_LONGEST_FIRST = tuple(sorted(OPTION_TABLE, key=len, reverse=True))
_OPTION_WORDS = frozenset(word for option in OPTION_TABLE for word in option.split("_"))
#: How alike (difflib ratio) a name and an option must be to call the name a misspelling.
_SURE_MISSPELLING = 0.85
_SOMEWHAT_ALIKE = 0.5  # below this, naming the "closest" option would only confuse


@dataclass(frozen=True, slots=True)
class AgentVariables:
    """The variables that set one agent's options, parsed; ``apply`` validates them."""

    name: str
    values: Mapping[str, tuple[str, str, Any]]  # option -> (variable, raw text, parsed value)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(variable for variable, _, _ in self.values.values())

    def apply(self, base: AgentOptions = DEFAULT_OPTIONS) -> AgentOptions:
        """``base`` with these variables' options: one validation, errors naming the variable."""
        changes = {option: parsed for option, (_, _, parsed) in self.values.items()}
        try:
            return base.replace(**changes)
        except InvalidOption as exc:
            if exc.option is not None and exc.option in self.values:
                variable, raw, _ = self.values[exc.option]
                raise AgentSettingsError(
                    f"{variable}={raw!r}: {exc}", variable=variable, value=raw
                ) from exc
            variables = ", ".join(self.variables)
            raise AgentSettingsError(f"{variables}: {exc}", variable=variables, value=None) from exc


def read_variables(
    config: Config | None = None, *, prefix: str = DEFAULT_PREFIX, strict: bool = False
) -> dict[str, AgentVariables]:
    """The agents that variables of ``config`` configure, by lower-case name.

    Reads ``config``'s environment and ``.env`` values (the environment wins, as in ``Config``),
    honouring ``config.env_prefix``. Raises ``AgentSettingsError`` naming the first bad variable.
    """
    check_prefix(prefix)
    config = config if config is not None else Config()
    full_prefix = config.env_prefix + prefix
    environ = set(config.environ)
    found: dict[str, dict[str, tuple[str, str, Any]]] = {}
    for key in sorted({*environ, *config.file_values}):
        if not key.startswith(full_prefix):
            continue
        rest = key[len(full_prefix) :]
        target = _target(key, rest, full_prefix)
        if target is None:
            _unknown(key, rest, full_prefix, in_file=key not in environ, strict=strict)
            continue
        name, option = target
        # Config.get puts its own env_prefix in front again, so ask without it.
        raw = str(config.get(key[len(config.env_prefix) :]))
        values = found.setdefault(name, {})
        if option in values:
            raise AgentSettingsError(
                f"{key} and {values[option][0]} both set {option!r} of agent {name!r}; keep one",
                variable=key,
                value=raw,
            )
        values[option] = (key, raw, _parse(key, raw, name, option))
    return {name: AgentVariables(name, values) for name, values in found.items()}


def read_agent_settings(
    config: Config | None = None, *, prefix: str = DEFAULT_PREFIX, strict: bool = False
) -> dict[str, AgentOptions]:
    """The options of every agent that variables of ``config`` configure, by lower-case name."""
    found = read_variables(config, prefix=prefix, strict=strict)
    return {name: variables.apply() for name, variables in found.items()}


def read_agent_options(
    config: Config | None = None, *, prefix: str = DEFAULT_PREFIX, strict: bool = False
) -> dict[str, dict[str, Any]]:
    """Only the options that variables set, parsed and checked, by agent name.

    For layering over options given in code, ``read_variables(...)[name].apply(base)`` does the
    same in one validation, with errors naming the variable.
    """
    found = read_variables(config, prefix=prefix, strict=strict)
    for variables in found.values():
        variables.apply()
    return {
        name: {option: parsed for option, (_, _, parsed) in variables.values.items()}
        for name, variables in found.items()
    }


def normalise_name(name: str) -> str:
    """An agent's name as the registry keys it: lower case, ``[a-z0-9]`` words joined by ``_``."""
    lowered = name.lower()
    if not _NAME_RE.fullmatch(lowered):
        raise InvalidOption(
            f"agent name must be letters, digits and single underscores, got {name!r}"
        )
    return lowered


def check_prefix(prefix: object) -> None:
    """Refuse a prefix that would glue onto the option name (``"OUTBOUND"``)."""
    if not isinstance(prefix, str):
        raise InvalidOptionType(f"prefix must be a string such as 'AGENT_', got {prefix!r}")
    if not prefix.endswith("_") or prefix.strip("_") == "":
        fixed = f"{prefix.rstrip('_')}_" if prefix.strip("_") else "AGENT_"
        raise InvalidOption(
            f"prefix must be letters ending in '_', got {prefix!r}; write prefix={fixed!r} "
            f"(variables are then {fixed}MAX_SOCKETS, {fixed}<NAME>__MAX_SOCKETS)"
        )


# --------------------------------------------------------------------------- one variable


def _target(key: str, rest: str, full_prefix: str) -> tuple[str, str] | None:
    """``(agent name, option)`` that ``rest`` sets; None if it ends in no option."""
    if "__" in rest:
        raw_name, _, raw_option = rest.rpartition("__")
        option = raw_option.lower()
        if option not in OPTION_TABLE:
            return None
        return _agent_name(key, raw_name, option, full_prefix), option
    lowered = rest.lower()
    for option in _OPTIONS_LONGEST_FIRST:
        if lowered == option:
            return DEFAULT_NAME, option
        if lowered.endswith("_" + option):
            return _agent_name(key, rest[: -len(option) - 1], option, full_prefix), option
    return None


def _agent_name(key: str, raw: str, option: str, full_prefix: str) -> str:
    """The agent a variable that ends in ``option`` is for; the name is to blame if bad."""
    lowered = raw.lower()
    if _NAME_RE.fullmatch(lowered):
        return lowered
    fixed = re.sub(r"[^a-z0-9]+", "_", lowered).strip("_")
    if fixed:
        instead = f"for an agent named {fixed!r}, write {full_prefix}{fixed.upper()}__"
    else:
        instead = f"for the default agent, write {full_prefix}"
    raise AgentSettingsError(
        f"{key} sets {option} of an agent named {raw!r}, which is not a valid agent name "
        f"(letters, digits and single underscores); {instead}{OPTION_TABLE[option].variable}",
        variable=key,
        value=None,
    )


def _parse(key: str, raw: str, name: str, option: str) -> Any:
    parse = OPTION_TABLE[option].parse
    if parse is None:
        raise AgentSettingsError(
            f"{key}={raw!r}: {option} cannot be set from the environment; pass it in code "
            f"(AgentRegistry({{{name!r}: AgentOptions({option}=...)}}))",
            variable=key,
            value=raw,
        )
    try:
        return parse(raw)
    except ValueError as exc:
        message = f"{key}={raw!r}: {option} {exc}"
        raise AgentSettingsError(message, variable=key, value=raw) from None


def _unknown(key: str, rest: str, full_prefix: str, *, in_file: bool, strict: bool) -> None:
    """Judge a variable that sets no option: an error, one warning, or another tool's."""
    splits = _splits(rest)
    surely = _sure_meaning(splits, full_prefix)
    if surely is not None:
        raise AgentSettingsError(f"{key} is no agent option: {surely}", variable=key, value=None)
    closest = _closest(splits, full_prefix)
    if in_file or strict:
        where = "in the .env file" if in_file else "(strict=True)"
        raise AgentSettingsError(
            f"{key} {where} is no agent option{closest}; variables starting with "
            f"{full_prefix} are {full_prefix}<OPTION>, {full_prefix}<NAME>_<OPTION> or "
            f"{full_prefix}<NAME>__<OPTION>",
            variable=key,
            value=None,
        )
    if any(word in _OPTION_WORDS for word in rest.lower().split("_")):
        logger.warning(
            "%s is no agent option and is ignored%s; strict=True makes this an error",
            key,
            closest,
        )


def _splits(rest: str) -> list[tuple[str, str, str]]:
    """Where the agent name could end: ``(name, separator, option)``, longest option first."""
    if "__" in rest:
        return [rest.rpartition("__")]
    words = rest.split("_")
    return [("_".join(words[:i]), "_", "_".join(words[i:])) for i in range(len(words))]


def _variable(full_prefix: str, name: str, separator: str, option: str) -> str:
    return f"{full_prefix}{name}{separator if name else ''}{OPTION_TABLE[option].variable}"


def _sure_meaning(splits: list[tuple[str, str, str]], full_prefix: str) -> str | None:
    """What a variable surely meant, if it ends in a Node name or a near-certain misspelling."""
    for name, separator, tail in splits:
        hint = node_hint(tail)
        if hint is not None:
            message, meant = hint
            instead = " or ".join(_variable(full_prefix, name, separator, o) for o in meant)
            return f"{message}; set {instead}" if instead else message
    for name, separator, tail in splits:
        close = close_option(tail, cutoff=_SURE_MISSPELLING)
        if close is not None:
            return f"did you mean {_variable(full_prefix, name, separator, close[0])}?"
    return None


def _closest(splits: list[tuple[str, str, str]], full_prefix: str) -> str:
    """`` (the closest is max_sockets (AGENT_MAX_SOCKETS))``, or nothing if none is close."""
    scored = []
    for name, separator, tail in splits:
        close = close_option(tail, cutoff=_SOMEWHAT_ALIKE)
        if close is not None:
            option, ratio = close
            scored.append((ratio, option, _variable(full_prefix, name, separator, option)))
    if not scored:
        return ""
    _, option, variable = max(scored)
    return f" (the closest is {option}, {variable})"
