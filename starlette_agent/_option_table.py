"""How each agent option is spelt outside Python: its variable, its string parser, Node's name.

One entry per ``AgentOptions`` field, written out rather than derived from type annotations, so
what ``AGENT_MAX_SOCKETS`` accepts is read here. A parser only turns text into the value code
would pass (``"none"`` into ``None``, ``"off"`` into ``False``); whether that value is acceptable
is decided by ``AgentOptions`` alone, so a value is accepted or refused alike from code and from
the environment, with the same message. Options that are objects (an SSL context, a connector)
have no parser: they are set in code only.

Node's ``http.Agent`` names (``maxSockets``, ``keepAlive``, ``timeout``...) are never accepted,
in code or in variables, but an error that meets one names the option to use instead.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OPTION_TABLE",
    "EnvOption",
    "close_option",
    "explain_unknown_option",
    "node_hint",
]

Parser = Callable[[str], Any]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


@dataclass(frozen=True, slots=True)
class EnvOption:
    """One option as the environment spells it."""

    name: str  # the AgentOptions field
    parse: Parser | None  # text -> the value code would pass; None: code only
    node_name: str | None = None  # Node's http.Agent name for it, pointed to in errors

    @property
    def variable(self) -> str:
        """The variable's end: ``AGENT_MAX_SOCKETS``, ``AGENT_PAYMENTS__MAX_SOCKETS``."""
        return self.name.upper()


# --------------------------------------------------------------------------- parsers


def parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false (also yes/no, on/off, 1/0)")


def parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def parse_seconds(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of seconds") from None


def parse_text(raw: str) -> str:
    return raw.strip()


def parse_cidr_list(raw: str) -> tuple[str, ...]:
    """``"10.0.0.0/8, fd00::/8"`` -> ``("10.0.0.0/8", "fd00::/8")``; empty means none."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_json_headers(raw: str) -> Any:
    """``{"X-Api-Version": "2"}`` -> that mapping; empty means none."""
    if not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object of header names to values, {"X-Name": "value"}')
    return value


def or_none(parse: Parser) -> Parser:
    """``parse``, with ``none``, ``null`` or an empty value meaning None."""

    def parse_optional(raw: str) -> Any:
        if raw.strip().lower() in _NONE:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}, or none") from None

    return parse_optional


# --------------------------------------------------------------------------- the table

OPTION_TABLE: dict[str, EnvOption] = {
    entry.name: entry
    for entry in (
        EnvOption("keep_alive", parse_bool, node_name="keepAlive"),
        EnvOption("max_sockets", or_none(parse_int), node_name="maxSockets"),
        EnvOption("max_total_sockets", or_none(parse_int), node_name="maxTotalSockets"),
        EnvOption("max_free_sockets", parse_int, node_name="maxFreeSockets"),
        # Any text: AgentOptions refuses what is not exactly "lifo" or "fifo", as from code.
        EnvOption("scheduling", parse_text),
        EnvOption("idle_timeout", or_none(parse_seconds)),
        EnvOption("keep_alive_timeout_buffer", parse_seconds),
        EnvOption("connect_timeout", or_none(parse_seconds)),
        EnvOption("read_timeout", or_none(parse_seconds)),
        EnvOption("headers_timeout", or_none(parse_seconds)),
        EnvOption("write_timeout", or_none(parse_seconds)),
        EnvOption("pool_timeout", or_none(parse_seconds)),
        EnvOption("max_requests_per_socket", or_none(parse_int)),
        EnvOption("max_response_size", or_none(parse_int)),
        EnvOption("ssl_context", None),
        EnvOption("local_address", or_none(parse_text), node_name="localAddress"),
        EnvOption("block_private_networks", parse_bool),
        EnvOption("allowed_networks", parse_cidr_list),
        EnvOption("connector", None, node_name="createConnection"),
        EnvOption("proxy", or_none(parse_text)),
        EnvOption("trust_env", parse_bool),
        EnvOption("http_parser", parse_text),
        EnvOption("base_url", or_none(parse_text)),
        EnvOption("headers", parse_json_headers),
        EnvOption("decompress", parse_bool),
        EnvOption("follow_redirects", parse_bool),
        EnvOption("max_redirects", parse_int),
        EnvOption("allow_https_downgrade", parse_bool),
        EnvOption("hooks", None),
    )
}

#: Node names that are no single option here, with what to use instead.
_SPLIT_NODE_NAMES: dict[str, str] = {
    "timeout": (
        "Node's timeout (socket inactivity, in milliseconds) is two options here, in seconds: "
        "read_timeout (the longest wait for a response's next bytes) and idle_timeout (how long "
        "a free socket is kept)"
    ),
    "keepalivemsecs": (
        "Node's keepAliveMsecs (TCP keep-alive probes) has no equivalent; keep_alive and "
        "idle_timeout govern reuse here"
    ),
}

_NAMES: tuple[str, ...] = tuple(OPTION_TABLE)


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def node_hint(name: str) -> tuple[str, tuple[str, ...]] | None:
    """If ``name`` is one of Node's option names: why it is no option, and the options meant."""
    squashed = _squash(name)
    for entry in OPTION_TABLE.values():
        if entry.node_name is not None and _squash(entry.node_name) == squashed:
            return f"{entry.node_name} is Node's name for {entry.name}", (entry.name,)
    if squashed in _SPLIT_NODE_NAMES:
        meant = ("read_timeout", "idle_timeout") if squashed == "timeout" else ()
        return _SPLIT_NODE_NAMES[squashed], meant
    return None


def close_option(name: str, *, cutoff: float) -> tuple[str, float] | None:
    """The option ``name`` most resembles, with how much (0 to 1); None below ``cutoff``."""
    lowered = name.lower()
    best = max(
        ((option, difflib.SequenceMatcher(None, lowered, option).ratio()) for option in _NAMES),
        key=lambda pair: pair[1],
    )
    return best if best[1] >= cutoff else None


def explain_unknown_option(name: str) -> str:
    """The message for a keyword that is no agent option: which option it probably means."""
    hint = node_hint(name)
    if hint is not None:
        return f"unknown agent option {name!r}: {hint[0]}"
    close = close_option(name, cutoff=0.6)
    if close is not None:
        return f"unknown agent option {name!r}; did you mean {close[0]!r}?"
    return f"unknown agent option {name!r}; the options are: {', '.join(_NAMES)}"
