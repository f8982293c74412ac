"""The keyword arguments of a request, and what checks them.

``agent.request``, the verbs, ``agent.stream`` and the module-level ``request`` take the same
explicit keyword-only arguments, so a type checker catches ``agent.get(url, parms={...})``;
``RequestArgs`` names that set as a ``TypedDict`` (for a wrapper's ``Unpack[RequestArgs]``).
``RequestParts`` is the part of it a ``Request`` is made of (``Request(...)``,
``agent.build_request``), which take it with ``Unpack``. At run time a misspelt argument is an
``InvalidOptionType`` naming the one meant (``naming_the_argument_meant``, ``check_arguments``).
The encoders turn ``params``, ``data`` and ``auth`` into bytes.
"""

from __future__ import annotations

import base64
import difflib
import functools
import inspect
import ssl
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeAlias, TypedDict, TypeVar, cast
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
    "checked_follow_redirects",
    "encode_form",
    "naming_the_argument_meant",
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
            raise InvalidOptionType(
                f"{name} is an argument of request(), stream() and the verbs, which send the "
                "request and follow its redirects; dispatch() sends exactly the request it is "
                "given",
                option=name,
            )
        raise _unknown(name, [n for n in RequestArgs.__annotations__ if n in allowed])


def _unknown(name: str, allowed: list[str]) -> InvalidOptionType:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"the arguments are: {', '.join(allowed)}"
    return InvalidOptionType(f"unknown request argument {name!r}; {hint}", option=name)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def naming_the_argument_meant(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function``, whose keyword arguments are explicit, with a misspelt keyword refused as
    ``InvalidOptionType`` (also a ``TypeError``) naming the argument meant, rather than Python's
    bare "unexpected keyword argument".

    Only a call that Python itself refuses is looked at: calling an ``async def`` (or an
    ``asynccontextmanager``) binds its arguments before any of its code runs, so a
    ``TypeError`` raised by the call is about the arguments, and the checks cost nothing
    otherwise.
    """
    parameters = inspect.signature(function).parameters.values()
    keywords = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    allowed = [name for name in keywords if name not in ("self", "method", "url")]

    def refuse_unknown(given: Mapping[str, object]) -> None:
        for name in given:
            if name not in keywords:
                raise _unknown(name, allowed) from None

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            try:
                coroutine = function(*args, **kwargs)
            except TypeError:
                refuse_unknown(kwargs)
                raise
            return await coroutine

        return cast("Callable[_P, _R]", call_async)

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TypeError:
            refuse_unknown(kwargs)
            raise

    return cast("Callable[_P, _R]", call)


def checked_follow_redirects(follow: object) -> bool | None:
    """``follow_redirects`` as given, or ``InvalidOptionType`` when it is no bool or None."""
    if follow is not None and not isinstance(follow, bool):
        raise InvalidOptionType(
            f"follow_redirects must be True, False or None (the agent's), got {follow!r}",
            option="follow_redirects",
        )
    return follow


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
