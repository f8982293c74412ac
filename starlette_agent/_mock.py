"""``MockAgent``: an ``Agent`` whose requests are answered in process, for tests.

It implements the agent's public seam, ``dispatch``: each request is recorded and matched
against the interceptors and mounts there, and a matched one is then sent by the agent's own
machinery over a simulated socket (``_simulated``) whose far end gives the chosen answer. So
the pool, ``reused_socket``, limits and queueing, timeouts, ``max_response_size``, ``aclose()``
and ``stats()`` behave as in production; only the network is missing.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Unpack
from urllib.parse import parse_qsl

import h11
from starlette.datastructures import Headers
from starlette.types import ASGIApp

from ._agent import Agent
from ._errors import AgentError, InvalidOption, InvalidOptionType
from ._options import AgentOptionArgs, AgentOptions, resolve_options
from ._request import Request, buffered
from ._response import Response
from ._simulated import Answer, AppAnswer, Failure, Reply, answering, connect_simulated
from ._urls import Origin, parse_url, redact_url


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
        return jsonlib.loads(self.body)


@dataclass(eq=False)
class Interceptor:
    """One expected request and its answer. Answers once unless ``times(n)`` or ``persist()``."""

    method: str
    url: str | re.Pattern[str]
    _answer: Reply | Failure | None = field(default=None, init=False)
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
        """Answer with this response (``json=`` sets the body and ``content-type``).

        ``Content-Length`` is set unless given; a ``Connection: close`` header makes the mock's
        server close the socket after the response, as a real one does.
        """
        all_headers = dict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json).encode()
            all_headers.setdefault("content-type", "application/json")
        body = content.encode() if isinstance(content, str) else content
        if not any(name.lower() == "content-length" for name in all_headers):
            all_headers["content-length"] = str(len(body))
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 999:
            raise InvalidOption(f"reply() takes a final status code (200 to 999), got {status!r}")
        try:
            raw = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in all_headers.items()
            ]
            h11.Response(status_code=status, headers=raw)  # refuse what no server could send
        except (UnicodeEncodeError, h11.LocalProtocolError) as exc:
            raise InvalidOption(f"reply() cannot send these headers: {exc}") from None
        self._answer = Reply(status, raw, body)
        return self

    def reply_with_error(self, error: BaseException) -> Interceptor:
        """Raise ``error`` (say ``ConnectError("refused")``) instead of answering.

        A ``ConnectError`` (or ``BlockedAddress``) is raised where the socket would be opened,
        so no socket is counted when none was pooled; any other error where the response would
        have arrived, after which that socket is closed, as the agent closes any socket in doubt.
        """
        self._answer = Failure(error)
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

    def _matches(self, request: Request) -> bool:
        if self._remaining == 0 or self.method not in ("*", request.method):
            return False
        if isinstance(self.url, re.Pattern):
            return self.url.search(request.url) is not None
        expected = parse_url(self.url)
        if expected.origin != request.origin:
            return False
        expected_path, _, expected_query = expected.target.partition(b"?")
        path, _, query = request.target.partition(b"?")
        if expected_path != path:
            return False
        # A query in the interceptor must match (in any order); none matches any query.
        return not expected_query or sorted(parse_qsl(expected_query.decode())) == sorted(
            parse_qsl(query.decode())
        )

    def _use(self, recorded: RecordedRequest) -> Answer:
        self.calls.append(recorded)
        if self._remaining is not None:
            self._remaining -= 1
        if self._answer is None:
            raise UnmatchedRequest(
                f"{self!r} matched {recorded.method} {redact_url(recorded.url)} but has no reply; "
                "call .reply(...) or .reply_with_error(...) on it"
            )
        return self._answer


class MockAgent(Agent):
    """An ``Agent`` that answers requests in process, for tests.

    ``intercept(method, url)`` declares an expected request (``method`` ``"*"`` matches any;
    ``url`` is matched on scheme, host, port and path, and on the query if it has one, or is a
    compiled regex searched in the full URL). ``mount(origin, app)`` sends an origin's requests
    to an ASGI app. Every request is recorded in ``requests``.

    A request nothing answers raises ``UnmatchedRequest`` listing what was expected, unless
    ``allow_network`` is on: then it goes to ``agent.dispatch`` (undici's ``MockAgent`` with
    net connect enabled), or, without ``agent``, to a plain ``Agent`` with this mock's options
    that the mock owns and closes (``network_agent``). An ``agent`` passed in is the caller's
    to close.

    Answered requests go through this agent's own pool over simulated sockets, so
    ``stats()``, ``reused_socket``, ``max_sockets`` and the other limits, the timeouts,
    ``max_response_size`` and ``aclose()`` behave as in production. Requests let through to
    the network are counted by the agent that sent them; refused ones (``UnmatchedRequest``)
    nowhere, like a request that fails validation.
    """

    def __init__(
        self,
        options: AgentOptions | None = None,
        /,
        *,
        agent: Agent | None = None,
        allow_network: bool = False,
        **changes: Unpack[AgentOptionArgs],
    ) -> None:
        """``MockAgent()``, ``MockAgent(max_sockets=1)`` or ``MockAgent(options)``, as ``Agent``.

        The options configure the mock's own pool; those about real sockets (the SSRF guard,
        proxies) configure only the agent it makes for requests let through.
        """
        network_options = resolve_options(options, changes)
        if network_options.connector is not None:
            raise InvalidOption(
                "MockAgent answers through its own connector; for requests let through to the "
                "network, pass agent=Agent(connector=...) and allow_network=True",
                option="connector",
            )
        if agent is not None and not isinstance(agent, Agent):
            raise InvalidOptionType(f"agent must be an Agent or None, got {agent!r}")
        super().__init__(
            network_options.replace(
                connector=connect_simulated,
                block_private_networks=False,
                allowed_networks=(),
                proxy=None,
                trust_env=False,
            )
        )
        self.allow_network = allow_network
        self.interceptors: list[Interceptor] = []
        self.mounts: dict[Origin, ASGIApp] = {}
        self.requests: list[RecordedRequest] = []
        self._network_options = network_options
        self._network = agent
        self._owns_network = False

    @property
    def network_agent(self) -> Agent | None:
        """The agent unmatched requests go to when ``allow_network`` is on (None until the mock
        makes one, when no ``agent`` was given)."""
        return self._network

    def intercept(self, method: str, url: str | re.Pattern[str]) -> Interceptor:
        """Expect a ``method`` request to ``url``; configure the answer on what is returned."""
        if isinstance(url, str):
            parse_url(url)  # reject a bad URL now, not when nothing matches
        interceptor = Interceptor(method.upper(), url)
        self.interceptors.append(interceptor)
        return interceptor

    def mount(self, origin: str, app: ASGIApp) -> None:
        """Answer every request to ``origin`` (``"http://users:8000"``) with the ASGI ``app``.

        The app runs as a task of its own from the request head on, and its response streams
        to the caller as it sends it (``stream()`` sees each piece). An exception it raises
        reaches the caller unchanged, as with Starlette's ``TestClient``. No lifespan is run.
        """
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

    async def dispatch(self, request: Request) -> Response:
        """Record ``request``, then answer it in process, or let it through, or refuse it.

        The contract is ``Agent.dispatch``'s; ``UnmatchedRequest`` is added.
        """
        if self.closed:
            raise self._closed_error(request.origin)
        request = await buffered(request)  # its body is recorded and then sent
        body = request.body if isinstance(request.body, bytes) else b""
        recorded = RecordedRequest(request.method, request.url, request.headers, body)
        self.requests.append(recorded)
        answer = self._answer_for(request, recorded)
        if answer is not None:
            with answering(answer):
                return await super().dispatch(request)
        network = self._network_for_unmatched()
        if network is None:
            raise UnmatchedRequest(self._unmatched_message(request), origin=str(request.origin))
        return await network.dispatch(request)

    async def aclose(self) -> None:
        """Close the simulated sockets, and the network agent if the mock made it."""
        await super().aclose()
        if self._owns_network and self._network is not None:
            await self._network.aclose()

    def _answer_for(self, request: Request, recorded: RecordedRequest) -> Answer | None:
        for interceptor in self.interceptors:
            if interceptor._matches(request):
                return interceptor._use(recorded)
        app = self.mounts.get(request.origin)
        return AppAnswer(app) if app is not None else None

    def _network_for_unmatched(self) -> Agent | None:
        if not self.allow_network:
            return None
        if self._network is None:
            self._network = Agent(self._network_options)
            self._owns_network = True
        return self._network

    def _unmatched_message(self, request: Request) -> str:
        expected = [repr(interceptor) for interceptor in self.interceptors if interceptor.pending]
        expected += [f"<Mount {origin}>" for origin in self.mounts]
        listed = "\n  ".join(expected) if expected else "(nothing: no interceptors or mounts)"
        return (
            f"MockAgent has no answer for {request.method} {redact_url(request.url)} and network "
            "access is "
            f"off (MockAgent(allow_network=True) allows it). Expected:\n  {listed}"
        )
