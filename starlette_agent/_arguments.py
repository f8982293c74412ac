"""The keyword arguments of a request, written once.

``RequestParts`` is what a ``Request`` is made of (``Request(...)``, ``agent.build_request``);
``RequestArgs`` adds what sending does with it (``follow_redirects``), for ``agent.request``,
the verbs, ``agent.stream`` and the module-level ``request``. Being ``TypedDict``\\ s taken with
``Unpack``, they give every one of those calls the same typed signature, so a type checker
catches ``agent.get(url, parms={...})``; at run time ``check_arguments`` catches it, naming the
argument meant. The encoders turn ``params``, ``data`` and ``auth`` into bytes.
"""

from __future__ import annotations

import base64
import difflib
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypedDict
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from ._connection import Timeouts
from ._errors import InvalidOptionType, InvalidRequest

__all__ = [
    "AuthTypes",
    "ContentTypes",
    "FormTypes",
    "HeaderTypes",
    "ParamTypes",
    "RequestArgs",
    "RequestParts",
    "basic_authorization",
    "check_arguments",
    "encode_form",
    "split_arguments",
    "with_params",
]

HeaderTypes: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
ContentTypes: TypeAlias = bytes | bytearray | memoryview | str | AsyncIterable[bytes]
#: One value of a query parameter or form field: ``True`` is sent as ``true``, None as empty.
PrimitiveValue: TypeAlias = str | int | float | bool | None
#: Names to a value or a list of values (sent once each), or (name, value) pairs in order.
ParamTypes: TypeAlias = (
    Mapping[str, PrimitiveValue | Sequence[PrimitiveValue]] | Sequence[tuple[str, PrimitiveValue]]
)
FormTypes: TypeAlias = ParamTypes
AuthTypes: TypeAlias = tuple[str | bytes, str | bytes]


class RequestParts(TypedDict, total=False):
    """What a request is made of: the keyword arguments of ``Request`` and ``build_request``."""

    headers: HeaderTypes | None
    content: ContentTypes | None
    json: Any
    data: FormTypes | None
    params: ParamTypes | None
    auth: AuthTypes | None
    timeout: float | Timeouts | None
    ssl_context: ssl.SSLContext | None


class RequestArgs(RequestParts, total=False):
    """The keyword arguments of ``request()``, the verbs (``get()``...), ``stream()`` and the
    module-level ``request()``: a request's parts, and whether to follow its redirects (None,
    the default: the agent's ``follow_redirects``)."""

    follow_redirects: bool | None


_PARTS = frozenset(RequestParts.__optional_keys__)
_ARGS = frozenset(RequestArgs.__optional_keys__)


def check_arguments(arguments: Mapping[str, Any], *, sending: bool) -> None:
    """Refuse a keyword that is no request argument, naming the one it probably means.

    ``sending``: the call sends the request (``request()``...), so ``follow_redirects`` is an
    argument; else it only builds one (``build_request()``, ``Request()``).
    """
    allowed = _ARGS if sending else _PARTS
    for name in arguments:
        if name in allowed:
            continue
        if name in _ARGS:
            message = (
                f"{name} is an argument of request(), stream() and the verbs, which send the "
                "request and follow its redirects; dispatch() sends exactly the request it is "
                "given"
            )
        else:
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"the arguments are: {_listed(allowed)}"
            )
            message = f"unknown request argument {name!r}; {hint}"
        raise InvalidOptionType(message, option=name)


def split_arguments(arguments: RequestArgs) -> tuple[RequestParts, bool | None]:
    """``(the request's parts, follow_redirects)``, after checking every name."""
    check_arguments(arguments, sending=True)
    parts: dict[str, Any] = dict(arguments)
    follow = parts.pop("follow_redirects", None)
    if follow is not None and not isinstance(follow, bool):
        raise InvalidOptionType(
            f"follow_redirects must be True, False or None (the agent's), got {follow!r}",
            option="follow_redirects",
        )
    return parts, follow  # type: ignore[return-value]


def _listed(names: Iterable[str]) -> str:
    order = list(RequestArgs.__annotations__)
    return ", ".join(sorted(names, key=order.index))


# --------------------------------------------------------------------------- encoders


def with_params(url: str, params: ParamTypes | None) -> str:
    """``url`` with ``params`` added after its own query, each name and value percent-encoded
    (a space as ``%20``). The URL's own query is kept as it is, so a name may appear twice."""
    if params is None:
        return url
    pairs = _pairs(params, "params")
    if not pairs:
        return url
    encoded = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequest(f"cannot add params to an invalid URL: {exc}") from exc
    query = f"{parts.query}&{encoded}" if parts.query else encoded
    return urlunsplit(parts._replace(query=query))


def encode_form(data: FormTypes) -> bytes:
    """``data`` as an ``application/x-www-form-urlencoded`` body, as an HTML form sends it."""
    return "&".join(
        f"{quote_plus(name)}={quote_plus(value)}" for name, value in _pairs(data, "data")
    ).encode("ascii")


def basic_authorization(auth: object) -> bytes:
    """The ``Authorization`` value for ``auth=(user, password)``: Basic, in UTF-8."""
    if not isinstance(auth, tuple) or len(auth) != 2:
        raise InvalidRequest(
            "auth must be a (user, password) tuple for Basic authentication, got "
            f"{type(auth).__name__}"
        )
    user, password = (_credential(part) for part in auth)
    if b":" in user:
        raise InvalidRequest("auth: a Basic user name cannot contain ':' (RFC 7617)")
    return b"Basic " + base64.b64encode(user + b":" + password)


def _credential(part: object) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode("utf-8")
    raise InvalidRequest(
        f"auth must hold a str or bytes user and password, got {type(part).__name__}"
    )


def _pairs(values: object, what: str) -> list[tuple[str, str]]:
    items: Iterable[Any]
    if isinstance(values, Mapping):
        items = values.items()
    elif isinstance(values, str | bytes) or not isinstance(values, Iterable):
        where = "in the URL" if what == "params" else "as content="
        raise InvalidRequest(
            f"{what} must be a mapping or a list of (name, value) pairs, got "
            f"{type(values).__name__}; pass a ready-made string {where}"
        )
    else:
        items = values
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidRequest(f"{what}: {item!r} is not a (name, value) pair")
        name, value = item
        if not isinstance(name, str):
            raise InvalidRequest(f"{what}: the name {name!r} is not a str")
        if isinstance(value, list | tuple):
            pairs.extend((name, _primitive(one, name, what)) for one in value)
        else:
            pairs.append((name, _primitive(value, name, what)))
    return pairs


def _primitive(value: object, name: str, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidRequest(
        f"{what}: the value of {name!r} must be a str, int, float, bool or None (or a list of "
        f"them), got {type(value).__name__}"
    )
