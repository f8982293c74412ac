"""URL parsing: hosts are read as a browser reads them, and anything parsers disagree on is refused.

Pure and synchronous: no socket is opened. An SSRF check, a pool key and the Host header all see
``Origin.host``, so a numeric host that the resolver would read as 127.0.0.1 must be 127.0.0.1
here too (the WHATWG URL standard's IPv4 parser).
"""

from __future__ import annotations

import ipaddress

import pytest

from starlette_agent import Agent, InvalidRequest
from starlette_agent._urls import parse_url, redact_url

NUMERIC_HOSTS = {
    "127.0.0.1": "127.0.0.1",
    "2130706433": "127.0.0.1",
    "0177.0.0.1": "127.0.0.1",
    "0x7f.1": "127.0.0.1",
    "0X7F.0.0.1": "127.0.0.1",
    "127.1": "127.0.0.1",
    "127.0.1": "127.0.0.1",
    "0x7f000001": "127.0.0.1",
    "017700000001": "127.0.0.1",
    "127.0.0.1.": "127.0.0.1",
    "0x7f.0x0.0x0.0x1": "127.0.0.1",
    "00000127.0.0.1": "87.0.0.1",  # leading zeros make it octal: 0127 is 87
    "10.0.258": "10.0.1.2",
    "0": "0.0.0.0",
    "0x": "0.0.0.0",
    "4294967295": "255.255.255.255",
    "169.254.43518": "169.254.169.254",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11": "127.0.0.1",  # full-width digits, mapped by IDNA
    "127\u30020\u30020\u30021": "127.0.0.1",  # ideographic full stops
}


@pytest.mark.parametrize(("host", "address"), list(NUMERIC_HOSTS.items()))
def test_numeric_hosts_are_read_as_the_address_they_reach(host: str, address: str) -> None:
    parsed = parse_url(f"http://{host}:8080/path")
    assert parsed.origin.host == address
    assert parsed.host_header == f"{address}:8080".encode()
    assert str(parsed.origin) == f"http://{address}:8080"
    assert Agent().get_name(f"http://{host}:8080/") == Agent().get_name(f"http://{address}:8080/")


@pytest.mark.parametrize(
    "host",
    [
        "256.256.256.256",
        "1.2.3.256",
        "1.256.3.4",
        "1.2.3.4.5",
        "1.2.3.4.5.",
        "4294967296",
        "0x100000000",
        "08.0.0.1",
        "0x7g.1",
        "1.2.3.09",
        "example.123",
        "foo.0x",
        "example.0x7f",
    ],
)
def test_invalid_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidRequest, match=r"ends in a number but is not an IPv4 address"):
        parse_url(f"http://{host}/")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.com", "example.com"),
        ("example.com.", "example.com."),
        ("1example.com", "1example.com"),
        ("123.example", "123.example"),
        ("a.b1", "a.b1"),
        ("0x.example", "0x.example"),
        ("localhost", "localhost"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
    ],
)
def test_names_are_left_as_names(host: str, expected: str) -> None:
    assert parse_url(f"http://{host}/").origin.host == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        # Spelt as this Python's ipaddress spells it (3.13 changed the mapped form).
        ("[::FFFF:127.0.0.1]", str(ipaddress.ip_address("::ffff:7f00:1"))),
        ("[2001:DB8::0001]", "2001:db8::1"),
    ],
)
def test_ipv6_literals_are_normalised(host: str, expected: str) -> None:
    parsed = parse_url(f"http://{host}:81/")
    assert parsed.origin.host == expected
    assert parsed.host_header == f"[{expected}]:81".encode()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://evil.example\\@127.0.0.1/", "backslash"),
        ("http://127.0.0.1\\.evil.example/", "backslash"),
        ("http://user\\name:pw@127.0.0.1/", "backslash"),
        ("http://a@b@127.0.0.1/", "more than one '@'"),
        ("http://evil.example@@127.0.0.1/", "more than one '@'"),
        ("http://%31%32%37.0.0.1/", "invalid host"),
        ("http://127.0.0.1%2e/", "invalid host"),
        ("http://exa%2emple.com/", "invalid host"),
        ("http://exa<mple.com/", "invalid host"),
        ("http://exa^mple.com/", "invalid host"),
        ("http://a|b.example/", "invalid host"),
        ("http://a\uff1cb.example/", "invalid host"),  # full-width '<', mapped to '<' by IDNA
        ("http://[fe80::1%25eth0]/", "invalid IPv6"),
        ("http://[::ffff:0177.0.0.1]/", "invalid"),  # urlsplit or ipaddress refuses it
        ("http://127.0.0.1\x01/", "forbidden characters"),
        ("http://127.0.0.1/\x7f", "forbidden characters"),
        ("\x01http://127.0.0.1/", "forbidden characters"),
        ("http://127.0.0.1/a\x1bb", "forbidden characters"),
    ],
)
def test_ambiguous_authorities_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment) as caught:
        parse_url(url)
    assert repr(redact_url(url)) in str(caught.value)  # the URL is named, never its password
    assert ":pw@" not in str(caught.value)


def test_an_at_sign_in_credentials_is_fine_percent_encoded() -> None:
    parsed = parse_url("http://user:p%40ss@127.0.0.1:8080/")
    assert parsed.origin.host == "127.0.0.1"
    assert parsed.authorization == b"Basic dXNlcjpwQHNz"  # user:p@ss
