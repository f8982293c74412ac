"""Following redirects, above ``dispatch``: each hop is a request of its own.

Every hop goes through ``agent.dispatch``, so it takes a socket from the pool like any request
(the reuse shows in ``stats()``, and a subclass or a ``MockAgent`` sees each hop). A redirect's
body is read, up to ``REDIRECT_BODY_LIMIT`` bytes, and its socket released before the next hop
is sent: a longer body is not drained, its socket is closed instead.

What a hop sends (RFC 9110 15.4, and what browsers and httpx do):

* 301, 302 and 303 turn any method but GET and HEAD into a GET without a body (and without the
  headers that described the body); 307 and 308 send the same method and body again, which a
  one-shot stream cannot be.
* A change of origin (scheme, host or port) drops ``Authorization``, ``Cookie`` and
  ``Proxy-Authorization``, and the ``Host`` header, which is then the new URL's.
* https to http is refused unless the agent's ``allow_https_downgrade`` is on.
* A relative ``Location`` is resolved against the URL of the request that got it; one without
  a fragment keeps the request's. Spaces and non-ASCII characters in it (read as UTF-8) are
  percent-encoded. Credentials in a ``Location`` (``http://user:pass@host/``) are dropped: the
  server does not choose what the client authenticates with.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from ._errors import InvalidRequest, RedirectError, TooManyRedirects
from ._request import Request
from ._response import Response
from ._urls import parse_url, redact_url

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["REDIRECT_BODY_LIMIT", "next_request", "send"]

#: The most of a redirect's body that is read (and kept as its ``content``) to free its socket.
REDIRECT_BODY_LIMIT = 64 * 1024

_CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
# Headers that describe a body: gone with the body when a redirect turns the method into GET.
_BODY_HEADERS = frozenset(
    {b"content-type", b"content-encoding", b"content-language", b"content-location"}
)
# Set again by the new Request for its own body.
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_METHOD_TO_GET = frozenset({301, 302, 303})
# RFC 3986's reserved characters, and "%" so that what is already percent-encoded stays so.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


async def send(agent: Agent, request: Request, *, follow_redirects: bool) -> Response:
    """``agent.dispatch(request)``, then, with ``follow_redirects``, each redirect in turn.

    The response returned has its body unread; the ones before it are in its ``history``.
    """
    response = await agent.dispatch(request)
    if not follow_redirects:
        return response
    history: list[Response] = []
    while response.is_redirect:
        await response._keep_body(REDIRECT_BODY_LIMIT)
        history.append(response)
        if len(history) > agent.config.max_redirects:
            raise _too_many(history, agent.config.max_redirects)
        request = next_request(
            request, response, allow_downgrade=agent.config.allow_https_downgrade
        )
        response = await agent.dispatch(request)
        response.history = list(history)
    return response


def next_request(request: Request, response: Response, *, allow_downgrade: bool) -> Request:
    """The request a redirect ``response`` to ``request`` asks for, or ``RedirectError``."""
    origin = str(request.origin)
    location = _location(response)
    try:
        url = _with_fragment(_without_credentials(urljoin(request.url, location)), request.url)
        target = parse_url(url).origin
    except (InvalidRequest, ValueError) as exc:
        raise RedirectError(
            f"{origin} redirected ({response.status}) to {redact_url(location)!r}, which cannot "
            f"be followed: {exc}",
            response=response,
            origin=origin,
        ) from exc
    if request.origin.scheme == "https" and target.scheme == "http" and not allow_downgrade:
        raise RedirectError(
            f"{origin} redirected ({response.status}) from https to {redact_url(url)!r}; the "
            "request and its response would travel unencrypted. Agent(allow_https_downgrade="
            "True) follows such redirects",
            response=response,
            origin=origin,
        )
    method, body = request.method, request.body
    dropped = set(_FRAMING_HEADERS)
    if response.status in _METHOD_TO_GET and method not in ("GET", "HEAD"):
        method, body = "GET", None
        dropped |= _BODY_HEADERS
    elif isinstance(body, AsyncIterable):
        raise RedirectError(
            f"{origin} redirected ({response.status}) {request.method} {redact_url(request.url)} "
            f"to {redact_url(url)!r}, which must be sent with the same body, but the body was "
            "an async iterable, read once as it was sent: pass the body as bytes to have it "
            "sent again, or follow_redirects=False and send it yourself",
            response=response,
            origin=origin,
        )
    if target != request.origin:
        dropped |= _CREDENTIAL_HEADERS | {b"host"}
    headers = [(name, value) for name, value in request.raw_headers if name.lower() not in dropped]
    try:
        return Request(
            method,
            url,
            headers=headers,
            content=body,
            timeout=request.timeouts,
            ssl_context=request.ssl_context,
        )
    except InvalidRequest as exc:
        raise RedirectError(
            f"{origin} redirected ({response.status}) to {redact_url(url)!r}, which cannot be "
            f"followed: {exc}",
            response=response,
            origin=origin,
        ) from exc


def _location(response: Response) -> str:
    """The ``Location`` as a URL that can be sent: read as UTF-8 (how servers write a path that
    is not ASCII) when it is valid UTF-8, and with what a request line cannot carry (spaces,
    non-ASCII) percent-encoded in its path, query and fragment, as browsers and httpx do."""
    raw = response.headers["location"].encode("latin-1")
    try:
        location = raw.decode("utf-8")
    except UnicodeDecodeError:
        location = raw.decode("latin-1")
    parts = urlsplit(location)
    return urlunsplit(
        parts._replace(
            path=quote(parts.path, safe=_URL_SAFE),
            query=quote(parts.query, safe=_URL_SAFE),
            fragment=quote(parts.fragment, safe=_URL_SAFE),
        )
    )


def _with_fragment(url: str, previous: str) -> str:
    # RFC 9110 10.2.2: a Location without a fragment keeps the one of the request's URL.
    if "#" in url:
        return url
    fragment = urlsplit(previous).fragment
    return f"{url}#{fragment}" if fragment else url


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _too_many(history: list[Response], limit: int) -> TooManyRedirects:
    urls = [response.url for response in history]
    last = history[-1]
    loop = " (a loop)" if len(set(urls)) < len(urls) else ""
    return TooManyRedirects(
        f"more than max_redirects={limit} redirects{loop}, from {urls[0]} to "
        f"{redact_url(last.headers['location'])!r}",
        response=last,
        origin=str(last.request.origin),
    )
