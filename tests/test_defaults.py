"""Requests built the agent's way: one built from a method and a URL alone is built once per
agent, and each call still gets a request of its own, equal to a freshly built one. No sockets."""

from __future__ import annotations

import pytest

from starlette_agent import Agent, InvalidRequest, Request
from starlette_agent._request import copied

URL = "http://127.0.0.1:8000/items?page=2"


def slots(request: Request) -> dict[str, object]:
    return {name: getattr(request, name) for name in Request.__slots__}


def test_a_request_built_again_equals_a_fresh_build_yet_is_its_own() -> None:
    agent = Agent(headers={"X-Team": "core"})
    first = agent.build_request("GET", URL)
    again = agent.build_request("GET", URL)
    fresh = agent.build_request("GET", URL, headers=None)  # with an argument: not cached
    assert slots(first) == slots(again) == slots(fresh)
    assert again is not first
    assert again.raw_headers is not first.raw_headers
    assert (b"x-team", b"core") in [(n.lower(), v) for n, v in again.raw_headers]


def test_changing_a_built_request_changes_no_later_one() -> None:
    agent = Agent()
    first = agent.build_request("POST", URL)
    first.raw_headers.append((b"x-changed", b"1"))
    first.body = b"changed"
    later = agent.build_request("POST", URL)
    assert (b"x-changed", b"1") not in later.raw_headers
    assert later.body == b""


def test_each_agent_builds_with_its_own_options() -> None:
    plain = Agent(decompress=False).build_request("GET", URL)
    decoding = Agent().build_request("GET", URL)
    assert b"accept-encoding" not in {n.lower() for n, _ in plain.raw_headers}
    assert b"accept-encoding" in {n.lower() for n, _ in decoding.raw_headers}


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", "ftp://127.0.0.1/"), ("BAD METHOD", URL), (b"GET", URL), (["GET"], URL)],
)
def test_a_bad_request_is_refused_every_time(method: object, url: str) -> None:
    agent = Agent()
    for _ in range(2):
        with pytest.raises(InvalidRequest):
            agent.build_request(method, url)  # type: ignore[arg-type]


def test_a_copy_has_every_part_of_the_request() -> None:
    request = Request("PUT", URL, content=b"x", headers={"a": "b"}, timeout=3)
    copy = copied(request)
    assert slots(copy) == slots(request)
    assert copy.raw_headers is not request.raw_headers
