"""Test doubles for code that uses agents: ``MockAgent`` and ``override_agent``.

``MockAgent`` is an ``Agent`` whose requests are answered in process, never on the network
unless asked: by *interceptors* (``mock.intercept("GET", url).reply(200, json=...)``) or by an
ASGI app mounted for an origin (``mock.mount("http://users", users_app)``). It replaces only
``Agent._send``, the one method every request goes through, so ``request``, ``get``...,
``stream`` and the ``Response`` behave as they do in production.

``override_agent(app, agent)`` makes a running (or not yet started) app inject another agent.

The app's agents are opened by its lifespan, so a test client must run it::

    with TestClient(app) as client:                      # `with`: lifespan on
        with override_agent(app, mock):
            client.get("/")

    async with LifespanManager(app) as manager:          # asgi_lifespan
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            await client.get("/")
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message

from ._agent import Agent
from ._discovery import MiddlewareFound, find
from ._errors import AgentError, InvalidOption
from ._request import PreparedRequest
from ._response import Response
from ._settings import DEFAULT_NAME, normalise_name
from ._setup_errors import UnknownAgentName
from ._urls import Origin, parse_url
from .middleware import AgentMiddleware

__all__ = [
    "Interceptor",
    "MockAgent",
    "RecordedRequest",
    "UnmatchedRequest",
    "override_agent",
]


class UnmatchedRequest(AgentError):
    """A ``MockAgent`` got a request that no interceptor or mount answers (and no network)."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the mock received it, for assertions."""

    method: str
    url: str
    headers: Headers
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass(eq=False)
class Interceptor:
    """One expected request and its answer. Answers once unless ``times(n)`` or ``persist()``."""

    method: str
    url: str | re.Pattern[str]
    _answer: Response | BaseException | None = field(default=None, init=False)
    _remaining: int | None = field(default=1, init=False)  # None: persists
    calls: list[RecordedRequest] = field(default_factory=list, init=False)

    def reply(
        self,
        status: int = 200,
        *,
        json: Any = None,
        content: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Interceptor:
        """Answer with this response (``json=`` sets the body and ``content-type``)."""
        all_headers = dict(headers or {})
        if json is not None:
            import json as jsonlib

            content = jsonlib.dumps(json).encode()
            all_headers.setdefault("content-type", "application/json")
        body = content.encode() if isinstance(content, str) else content
        all_headers.setdefault("content-length", str(len(body)))
        self._answer = Response(status, headers=all_headers, content=body)
        return self

    def reply_with_error(self, error: BaseException) -> Interceptor:
        """Raise ``error`` (say ``ConnectError("refused")``) instead of answering."""
        self._answer = error
        return self

    def times(self, count: int) -> Interceptor:
        """Answer the next ``count`` matching requests, then no more."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidOption(f"times() takes an integer >= 1, got {count!r}")
        self._remaining = count
        return self

    def persist(self) -> Interceptor:
        """Answer every matching request, for ever."""
        self._remaining = None
        return self

    @property
    def pending(self) -> bool:
        """Still expects a request: uses left, or persistent and never called."""
        return (self._remaining is not None and self._remaining > 0) or (
            self._remaining is None and not self.calls
        )

    def __repr__(self) -> str:
        target = self.url.pattern if isinstance(self.url, re.Pattern) else self.url
        uses = "persistent" if self._remaining is None else f"{self._remaining} left"
        return f"<Interceptor {self.method} {target} ({uses}, {len(self.calls)} calls)>"

    def _matches(self, method: str, url: str, origin: Origin, target: bytes) -> bool:
        if self._remaining == 0 or self.method not in ("*", method):
            return False
        if isinstance(self.url, re.Pattern):
            return self.url.search(url) is not None
        expected = parse_url(self.url)
        if expected.origin != origin:
            return False
        expected_path, _, expected_query = expected.target.partition(b"?")
        path, _, query = target.partition(b"?")
        if expected_path != path:
            return False
        # A query in the interceptor must match (in any order); none matches any query.
        return not expected_query or sorted(parse_qsl(expected_query.decode())) == sorted(
            parse_qsl(query.decode())
        )


class MockAgent(Agent):
    """An ``Agent`` that answers requests in process, for tests.

    ``intercept(method, url)`` declares an expected request (``method`` ``"*"`` matches any;
    ``url`` is matched on scheme, host, port and path, and on the query if it has one, or is a
    compiled regex searched in the full URL). ``mount(origin, app)`` sends an origin's requests
    to an ASGI app. A request nothing answers raises ``UnmatchedRequest`` listing what was
    expected, unless ``allow_network=True``, which lets it through to the real network.
    Every request is recorded in ``requests``.
    """

    def __init__(self, *, allow_network: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.allow_network = allow_network
        self.interceptors: list[Interceptor] = []
        self.mounts: dict[Origin, ASGIApp] = {}
        self.requests: list[RecordedRequest] = []

    def intercept(self, method: str, url: str | re.Pattern[str]) -> Interceptor:
        """Expect a ``method`` request to ``url``; configure the answer on what is returned."""
        if isinstance(url, str):
            parse_url(url)  # reject a bad URL now, not when nothing matches
        interceptor = Interceptor(method.upper(), url)
        self.interceptors.append(interceptor)
        return interceptor

    def mount(self, origin: str, app: ASGIApp) -> None:
        """Answer every request to ``origin`` (``"http://users:8000"``) with the ASGI ``app``."""
        parsed = parse_url(origin)
        if parsed.target not in (b"/", b""):
            raise InvalidOption(f"mount() takes an origin without a path, got {origin!r}")
        self.mounts[parsed.origin] = app

    def assert_no_pending_interceptors(self) -> None:
        """Fail if an interceptor still expects a request."""
        pending = [interceptor for interceptor in self.interceptors if interceptor.pending]
        if pending:
            listed = "\n  ".join(repr(interceptor) for interceptor in pending)
            raise AssertionError(f"{len(pending)} interceptor(s) were not used up:\n  {listed}")

    async def _send(self, request: PreparedRequest, *, timeout: float | None) -> Response:
        body = await _read_body(request.body)
        recorded = RecordedRequest(
            method=request.method,
            url=request.url,
            headers=Headers(raw=list(request.headers)),
            body=body,
        )
        self.requests.append(recorded)
        target = request.head.target
        for interceptor in self.interceptors:
            if interceptor._matches(request.method, request.url, request.origin, target):
                return self._answer(interceptor, recorded)
        app = self.mounts.get(request.origin)
        if app is not None:
            return await _call_asgi(app, request, body)
        if self.allow_network:
            # The body was read to record it; send the bytes on.
            request.body = body if request.body is not None else None
            return await super()._send(request, timeout=timeout)
        raise UnmatchedRequest(self._unmatched_message(request), origin=str(request.origin))

    def _answer(self, interceptor: Interceptor, recorded: RecordedRequest) -> Response:
        interceptor.calls.append(recorded)
        if interceptor._remaining is not None:
            interceptor._remaining -= 1
        answer = interceptor._answer
        if answer is None:
            raise UnmatchedRequest(
                f"{interceptor!r} matched {recorded.method} {recorded.url} but has no reply; "
                "call .reply(...) or .reply_with_error(...) on it"
            )
        if isinstance(answer, BaseException):
            raise answer
        return Response(
            answer.status, headers=answer.headers, content=answer.content, url=recorded.url
        )

    def _unmatched_message(self, request: PreparedRequest) -> str:
        expected = [repr(interceptor) for interceptor in self.interceptors if interceptor.pending]
        expected += [f"<Mount {origin}>" for origin in self.mounts]
        listed = "\n  ".join(expected) if expected else "(nothing: no interceptors or mounts)"
        return (
            f"MockAgent has no answer for {request.method} {request.url} and network access is "
            f"off (MockAgent(allow_network=True) allows it). Expected:\n  {listed}"
        )


async def _read_body(body: bytes | AsyncIterable[bytes] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return b"".join([chunk async for chunk in body])


async def _call_asgi(app: ASGIApp, request: PreparedRequest, body: bytes) -> Response:
    """One request through an ASGI app, in this task, the response buffered."""
    path, _, query = request.head.target.partition(b"?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.origin.scheme,
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.headers],
        "server": (request.origin.host, request.origin.port),
        "client": ("127.0.0.1", 0),
        "state": {},
    }
    request_sent = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal request_sent
        if request_sent:
            return {"type": "http.disconnect"}
        request_sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return Response(status, headers=headers, content=b"".join(chunks), url=request.url)


@contextlib.contextmanager
def override_agent(app: ASGIApp, agent: Agent, name: str = DEFAULT_NAME) -> Iterator[Agent]:
    """Make ``app`` inject ``agent`` wherever it injects the agent called ``name``.

    Works on a running app and on one not started yet (its middleware stack is built now, so
    add middleware before calling this). Covers ``request.state.agent``, ``get_agent``,
    ``agent_dependency(name)`` and route-level middleware that name the agent, in the app and
    in the apps mounted in it. The agent is not closed by the app: the caller closes it.

    Raises ``UnknownAgentName`` for a name no registry of the app defines, listing the known
    ones, so that a typo cannot let the test's requests reach the real upstream.
    """
    key = normalise_name(name)
    middleware = _agent_middleware(app)
    if not middleware:
        raise InvalidOption(
            f"override_agent: {app!r} has no AgentMiddleware; add one before overriding its agent"
        )
    known = {known_name for instance in middleware for known_name in instance.registry.names}
    if key not in known:
        raise UnknownAgentName(
            name, (DEFAULT_NAME, *sorted(known - {DEFAULT_NAME})), where="override_agent"
        )
    previous = [instance.set_override(key, agent) for instance in middleware]
    try:
        yield agent
    finally:
        for instance, before in zip(middleware, previous, strict=True):
            instance.set_override(key, before)


def _agent_middleware(app: ASGIApp) -> list[AgentMiddleware]:
    """Every AgentMiddleware of ``app``, at the top and below (stacks not built yet are built)."""
    found = find(app, AgentMiddleware)
    return [site.middleware for site in found if isinstance(site, MiddlewareFound)]
