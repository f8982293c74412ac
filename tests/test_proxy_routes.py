"""Which proxy each origin goes through: explicit, or from the environment. No sockets."""

from __future__ import annotations

import pytest

from starlette_agent import InvalidOption
from starlette_agent._proxy import NoProxy, ProxyRoutes, parse_proxy
from starlette_agent._urls import Origin, parse_url


def origin(url: str) -> Origin:
    return parse_url(url).origin


def test_a_proxy_url_keeps_its_credentials_out_of_every_text() -> None:
    proxy = parse_proxy("http://alice:s%40cret@proxy.internal:3128")
    assert str(proxy) == "http://proxy.internal:3128"
    assert "s@cret" not in repr(proxy) and "alice" not in repr(proxy)
    assert "with credentials" in repr(proxy)
    assert proxy.authorization == b"Basic YWxpY2U6c0BjcmV0"  # alice:s@cret


def test_a_bare_host_and_port_is_an_http_proxy() -> None:
    proxy = parse_proxy("proxy.internal:8080")
    assert str(proxy) == "http://proxy.internal:8080"
    assert proxy.authorization is None
    assert str(parse_proxy("http://[::1]:3128")) == "http://[::1]:3128"
    assert str(parse_proxy("http://10.0.0.1")) == "http://10.0.0.1:80"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "socks5://proxy:1080",
        "https://proxy:443",
        "http://proxy:99999",
        "http://:3128",
        "http://proxy:3128/path",
    ],
)
def test_a_bad_proxy_url_is_refused_naming_the_option(url: str) -> None:
    with pytest.raises(InvalidOption, match="proxy"):
        parse_proxy(url)


def test_a_refusal_never_shows_the_password() -> None:
    with pytest.raises(InvalidOption) as caught:
        parse_proxy("socks5://bob:hunter2@proxy:1080")
    assert "hunter2" not in str(caught.value)


def test_an_explicit_proxy_serves_every_origin() -> None:
    routes = ProxyRoutes(proxy="http://proxy:3128", trust_env=False, environ={"no_proxy": "*"})
    for url in ("http://a.example/", "https://b.example/", "http://127.0.0.1:8000/"):
        assert str(routes.proxy_for(origin(url))) == "http://proxy:3128"


def test_the_environment_is_read_only_with_trust_env() -> None:
    env = {"HTTP_PROXY": "http://proxy:3128", "HTTPS_PROXY": "http://proxy:3129"}
    assert (
        ProxyRoutes(proxy=None, trust_env=False, environ=env).proxy_for(origin("http://a/")) is None
    )
    routes = ProxyRoutes(proxy=None, trust_env=True, environ=env)
    assert str(routes.proxy_for(origin("http://a/"))) == "http://proxy:3128"
    assert str(routes.proxy_for(origin("https://a/"))) == "http://proxy:3129"
    assert routes.enabled


def test_lower_case_wins_and_all_proxy_is_the_fallback() -> None:
    env = {
        "http_proxy": "http://lower:1",
        "HTTP_PROXY": "http://upper:2",
        "ALL_PROXY": "http://all:3",
    }
    routes = ProxyRoutes(proxy=None, trust_env=True, environ=env)
    assert str(routes.proxy_for(origin("http://a/"))) == "http://lower:1"
    assert str(routes.proxy_for(origin("https://a/"))) == "http://all:3"


def test_upper_case_http_proxy_is_ignored_under_cgi() -> None:
    env = {"HTTP_PROXY": "http://attacker:1", "REQUEST_METHOD": "GET"}
    routes = ProxyRoutes(proxy=None, trust_env=True, environ=env)
    assert routes.proxy_for(origin("http://a/")) is None
    assert not routes.enabled


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "http://anything.example/", True),
        ("example.com", "http://example.com/", True),
        ("example.com", "http://api.example.com/", True),
        ("example.com", "http://notexample.com/", False),
        (".example.com", "http://example.com/", True),
        ("*.example.com", "http://a.b.example.com/", True),
        ("internal", "http://svc.internal:8080/", True),
        ("10.0.0.0/8", "http://10.1.2.3/", True),
        ("10.0.0.0/8", "http://11.1.2.3/", False),
        ("127.0.0.1", "http://127.0.0.1:9000/", True),
        ("127.0.0.1", "http://2130706433:9000/", True),  # the same address
        ("::1", "http://[::1]:9000/", True),
        ("[::1]:9000", "http://[::1]:9000/", True),
        ("[::1]:9000", "http://[::1]:9001/", False),
        ("example.com:8080", "http://example.com:8080/", True),
        ("example.com:8080", "http://example.com/", False),
        ("a.example, b.example  c.example", "http://c.example/", True),
        ("", "http://example.com/", False),
    ],
)
def test_no_proxy(no_proxy: str, url: str, direct: bool) -> None:
    assert NoProxy(no_proxy).matches(origin(url)) is direct
    env = {"https_proxy": "http://proxy:1", "http_proxy": "http://proxy:1", "no_proxy": no_proxy}
    routes = ProxyRoutes(proxy=None, trust_env=True, environ=env)
    assert (routes.proxy_for(origin(url)) is None) is direct


def test_a_bad_proxy_in_the_environment_names_the_variable() -> None:
    with pytest.raises(InvalidOption, match="HTTPS_PROXY"):
        ProxyRoutes(proxy=None, trust_env=True, environ={"HTTPS_PROXY": "ftp://x:1"})


def test_routing_decisions_are_bounded() -> None:
    routes = ProxyRoutes(proxy=None, trust_env=True, environ={"http_proxy": "http://p:1"})
    for port in range(1, 5000):
        routes.proxy_for(origin(f"http://127.0.0.1:{port}/"))
    assert len(routes._routes) <= 1024
