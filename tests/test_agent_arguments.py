"""The request arguments: one typed set for every verb, ``params``, ``data`` and ``auth``, the
agent's ``base_url`` and default headers, and a typo caught by mypy and at run time."""

from __future__ import annotations

import base64
import inspect
import tomllib
from pathlib import Path
from typing import Any

import pytest
from servers import UvicornServer
from starlette.config import Config

import starlette_agent
from starlette_agent import (
    Agent,
    AgentOptions,
    AgentRegistry,
    AgentSettingsError,
    InvalidOption,
    InvalidOptionType,
    InvalidRequest,
    Request,
    RequestArgs,
    RequestParts,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def echoed(response: Any) -> dict[str, Any]:
    """What ``/echo`` saw, its headers as a dict."""
    seen = response.json()
    return {**seen, "headers": dict(seen["headers"])}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ------------------------------------------------------------------ params, data, auth


async def test_params_are_added_to_the_query_percent_encoded(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(
            f"{server.url}/echo?page=2",
            params={"q": "café & tea", "tag": ["a/b", "c"], "on": True, "empty": None, "n": 1.5},
        )
    assert echoed(response)["query"] == (
        "page=2&q=caf%C3%A9%20%26%20tea&tag=a%2Fb&tag=c&on=true&empty=&n=1.5"
    )
    assert response.url.endswith(
        "/echo?page=2&q=caf%C3%A9%20%26%20tea&tag=a%2Fb&tag=c&on=true&empty=&n=1.5"
    )


async def test_params_as_pairs_keep_their_order(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/echo", params=[("b", "1"), ("a", "2"), ("b", 3)])
    assert echoed(response)["query"] == "b=1&a=2&b=3"


async def test_data_is_sent_as_a_form(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.post(f"{server.url}/echo", data={"name": "Ada L", "x": ["1", "2"]})
    seen = echoed(response)
    assert seen["body"] == "name=Ada+L&x=1&x=2"
    assert seen["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert seen["headers"]["content-length"] == str(len("name=Ada+L&x=1&x=2"))


async def test_auth_sends_basic_credentials(server: UvicornServer) -> None:
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/echo", auth=("ada", "s3cret:é"))
    assert echoed(response)["headers"]["authorization"] == basic("ada", "s3cret:é")


async def test_credentials_have_one_precedence_rule(server: UvicornServer) -> None:
    """The request's own Authorization header, then auth=, then the URL's user:password@, and
    the agent's default header last."""
    with_userinfo = server.url.replace("http://", "http://url:pw@") + "/echo"
    async with Agent(headers={"Authorization": "Bearer agent-default"}) as agent:

        async def sent(url: str, **arguments: Any) -> str:
            return echoed(await agent.get(url, **arguments))["headers"]["authorization"]

        own = {"Authorization": "Bearer own"}
        assert await sent(with_userinfo, auth=("auth", "pw"), headers=own) == "Bearer own"
        assert await sent(with_userinfo, auth=("auth", "pw")) == basic("auth", "pw")
        assert await sent(with_userinfo) == basic("url", "pw")
        assert await sent(f"{server.url}/echo") == "Bearer agent-default"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"content": b"a", "json": 1}, "pass one of content, json and data, not content and json"),
        ({"json": 1, "data": {"a": "b"}}, "not json and data"),
        ({"params": "a=1"}, "params must be a mapping or a list of"),
        ({"params": {"a": object()}}, "the value of 'a' must be a str, int"),
        ({"params": [("a",)]}, r"\('a',\) is not a \(name, value\) pair"),
        ({"data": b"raw"}, "pass a ready-made string as content="),
        ({"auth": "ada:pw"}, r"auth must be a \(user, password\) tuple"),
        ({"auth": ("a:b", "pw")}, "cannot contain ':'"),
        ({"auth": ("ada", 1)}, "auth must hold a str or bytes"),
    ],
)
async def test_bad_arguments_are_refused_before_any_io(
    server: UvicornServer, arguments: dict[str, Any], message: str
) -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest, match=message):
            await agent.post(f"{server.url}/echo", **arguments)
        assert agent.stats().requests == 0
    assert server.stats.opened == 0


@pytest.mark.parametrize(
    "timeout", ["5", [5], {"read": 1}, True, -1, 0, float("nan"), float("inf")], ids=repr
)
async def test_a_timeout_other_than_seconds_is_refused_before_any_io(
    server: UvicornServer, timeout: Any
) -> None:
    async with Agent() as agent:
        calls = [
            lambda: agent.get(f"{server.url}/echo", timeout=timeout),
            lambda: agent.request("POST", f"{server.url}/echo", json={}, timeout=timeout),
            lambda: starlette_agent.request("GET", server.url, agent=agent, timeout=timeout),
        ]
        for call in calls:
            with pytest.raises(InvalidOption, match="timeout must be a number of seconds > 0"):
                await call()
        with pytest.raises(InvalidOption, match="timeout must be"):
            async with agent.stream("GET", server.url, timeout=timeout):
                pass  # pragma: no cover
        with pytest.raises(InvalidOption, match="timeout must be"):
            agent.build_request("GET", server.url, timeout=timeout)
        assert agent.stats().requests == 0
    assert server.stats.opened == 0


# ------------------------------------------------------------------ typed arguments, typos


@pytest.mark.parametrize(
    ("keyword", "fragment"),
    [
        ("parms", "did you mean 'params'?"),
        ("header", "did you mean 'headers'?"),
        ("follow_redirect", "did you mean 'follow_redirects'?"),
        ("timeout_seconds", "did you mean 'timeout'?"),
        ("files", "headers, content, json, data, params, auth, timeout, ssl_context, follow_"),
    ],
)
async def test_a_misspelt_argument_is_refused_naming_the_one_meant(
    server: UvicornServer, keyword: str, fragment: str
) -> None:
    async with Agent() as agent:
        calls = [
            lambda: agent.get(server.url, **{keyword: 1}),
            lambda: agent.request("POST", server.url, **{keyword: 1}),
            lambda: starlette_agent.request("GET", server.url, agent=agent, **{keyword: 1}),
        ]
        for call in calls:
            with pytest.raises(
                InvalidOptionType, match=f"unknown request argument {keyword!r}"
            ) as caught:
                await call()
            assert fragment in str(caught.value)
            assert isinstance(caught.value, TypeError)
        with pytest.raises(InvalidOptionType, match=fragment):
            async with agent.stream("GET", server.url, **{keyword: 1}):  # type: ignore[call-arg]
                pass  # pragma: no cover
        assert agent.stats().requests == 0
    assert server.stats.opened == 0


async def test_building_a_request_follows_no_redirect() -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidOptionType, match="follow_redirects is an argument of request"):
            agent.build_request("GET", "http://example.test/", follow_redirects=True)  # type: ignore[call-arg]
        with pytest.raises(InvalidOptionType, match="follow_redirects is an argument"):
            Request("GET", "http://example.test/", follow_redirects=True)  # type: ignore[call-arg]
        with pytest.raises(InvalidOptionType, match="follow_redirects must be True, False or None"):
            await agent.get("http://example.test/", follow_redirects="yes")  # type: ignore[arg-type]


def test_every_verb_takes_the_same_explicit_keyword_arguments() -> None:
    """No ``**kwargs``: each argument is a keyword-only parameter of its own, with the same
    type and default everywhere, so help(), an editor and a type checker all see them."""
    parts = set(RequestParts.__optional_keys__)
    assert parts == {
        "headers",
        "content",
        "json",
        "data",
        "params",
        "auth",
        "timeout",
        "ssl_context",
    }
    assert set(RequestArgs.__optional_keys__) == parts | {"follow_redirects"}
    expected = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind.__forward_arg__
        )
        for name, kind in RequestArgs.__annotations__.items()
    ]
    for verb in ("get", "head", "options", "post", "put", "patch", "delete"):
        parameters = list(inspect.signature(getattr(Agent, verb)).parameters.values())
        assert [p.name for p in parameters[:2]] == ["self", "url"], verb
        assert parameters[2:] == expected, verb
    for sending in (Agent.request, Agent.stream):
        parameters = list(inspect.signature(sending).parameters.values())
        assert [p.name for p in parameters[:3]] == ["self", "method", "url"]
        assert parameters[3:] == expected, sending
    parameters = list(inspect.signature(starlette_agent.request).parameters.values())
    assert [p.name for p in parameters[:3]] == ["method", "url", "agent"]
    assert parameters[3:] == expected
    assert Agent.build_request.__annotations__["parts"] == "Unpack[RequestParts]"


async def test_the_verbs_stay_coroutine_functions() -> None:
    for verb in ("request", "get", "head", "options", "post", "put", "patch", "delete"):
        assert inspect.iscoroutinefunction(getattr(Agent, verb)), verb
    assert inspect.iscoroutinefunction(starlette_agent.request)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'url'"):
        await Agent().get()  # type: ignore[call-arg]  # Python's own message, as it was


# ------------------------------------------------------------------ base_url, default headers


async def test_relative_urls_resolve_against_the_base_url(
    server: UvicornServer, server2: UvicornServer
) -> None:
    async with Agent(base_url=f"{server.url}/api/v1") as agent:
        # /api/v1 + /users: the base's path is a prefix, as in httpx.
        response = await agent.get("/echo/users", params={"id": 7})
        assert response.url == f"{server.url}/api/v1/echo/users?id=7"
        assert (await agent.get("echo")).url == f"{server.url}/api/v1/echo"
        assert (await agent.get(f"{server2.url}/echo")).status == 200  # absolute: as given
        with pytest.raises(InvalidRequest, match="scheme-relative"):
            await agent.get("//elsewhere.test/")
    assert server.stats.request_lines == ["GET /api/v1/echo/users", "GET /api/v1/echo"]
    assert server2.stats.requests == 1


async def test_a_relative_url_without_a_base_url_is_refused() -> None:
    async with Agent() as agent:
        with pytest.raises(InvalidRequest, match=r"no scheme.*or give the agent a base_url"):
            await agent.get("/users/1")


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("/relative", "no scheme"),
        ("ftp://files.test", "unsupported URL scheme"),
        ("http://api.test/?v=1", "cannot hold a query or a fragment"),
        ("http://ada:pw@api.test/", r"cannot hold credentials .*'http://ada:\[secure\]@api.test/'"),
    ],
)
def test_a_bad_base_url_is_refused_naming_it(base_url: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as caught:
        Agent(base_url=base_url)
    assert caught.value.option == "base_url"
    assert "pw@" not in str(caught.value)


async def test_default_headers_go_under_each_requests_own(server: UvicornServer) -> None:
    defaults = {"X-Api-Version": "2", "X-Team": "payments", "Accept": "application/json"}
    async with Agent(headers=defaults) as agent:
        response = await agent.get(f"{server.url}/echo", headers={"x-team": "refunds"})
    raw = response.json()["headers"]
    assert [value for name, value in raw if name == "x-team"] == ["refunds"]  # replaced, once
    headers = dict(raw)
    assert headers["x-api-version"] == "2"
    assert headers["accept"] == "application/json"
    assert response.request.headers["x-team"] == "refunds"


async def test_the_user_agent_names_the_package_unless_set(server: UvicornServer) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert starlette_agent.__version__ == version
    async with Agent() as agent:
        response = await agent.get(f"{server.url}/echo")
        assert echoed(response)["headers"]["user-agent"] == f"starlette-agent/{version}"
        own = await agent.get(f"{server.url}/echo", headers={"User-Agent": "mine/1"})
        assert echoed(own)["headers"]["user-agent"] == "mine/1"
    async with Agent(headers={"user-agent": "service/3"}) as agent:
        response = await agent.get(f"{server.url}/echo")
        assert echoed(response)["headers"]["user-agent"] == "service/3"


def test_bad_default_headers_are_refused_naming_the_option() -> None:
    for headers, message in [
        ({"Content-Length": "3"}, "cannot set 'Content-Length'"),
        ({"Bad Name": "x"}, "is not a valid HTTP token"),
        ({"X-A": "a\r\nInjected: 1"}, "control character"),
        ("X-A: 1", "must be a mapping of header names"),
    ]:
        with pytest.raises(InvalidOption, match=message) as caught:
            AgentOptions(headers=headers)  # type: ignore[arg-type]
        assert caught.value.option == "headers"


def test_default_headers_are_a_value_and_hide_credentials_in_repr() -> None:
    options = AgentOptions(headers={"Authorization": "Bearer t0k3n", "X-A": "1"})
    assert options.headers == (("Authorization", "Bearer t0k3n"), ("X-A", "1"))
    assert options == AgentOptions(headers=[("Authorization", "Bearer t0k3n"), ("X-A", "1")])
    assert "t0k3n" not in repr(options) and "[secure]" in repr(options)


def test_the_new_options_come_from_settings_too() -> None:
    registry = AgentRegistry.from_settings(
        Config(
            environ={
                "AGENT_PAYMENTS_BASE_URL": "https://payments.internal/v2",
                "AGENT_PAYMENTS_HEADERS": '{"X-Api-Version": "2"}',
                "AGENT_PAYMENTS_FOLLOW_REDIRECTS": "yes",
                "AGENT_PAYMENTS_MAX_REDIRECTS": "3",
                "AGENT_PAYMENTS_DECOMPRESS": "off",
                "AGENT_PAYMENTS_ALLOW_HTTPS_DOWNGRADE": "false",
            }
        )
    )
    assert registry.settings("payments") == AgentOptions(
        base_url="https://payments.internal/v2",
        headers={"X-Api-Version": "2"},
        follow_redirects=True,
        max_redirects=3,
        decompress=False,
    )
    with pytest.raises(AgentSettingsError, match="AGENT_HEADERS='X-A: 1': headers must be a JSON"):
        AgentRegistry.from_settings(Config(environ={"AGENT_HEADERS": "X-A: 1"}))
