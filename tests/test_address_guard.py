"""The SSRF policy, without sockets: which addresses may be dialled, and what a refusal says."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_agent import AgentError, BlockedAddress, InvalidOption, InvalidOptionType
from starlette_agent._address_guard import AddressGuard, parse_networks

GUARD = AddressGuard(block_private_networks=True)

# address -> a fragment of the reason it is refused, or None when it may be dialled.
EXPECTED: dict[str, str | None] = {
    # IPv4
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "private (RFC 1918)",
    "10.255.255.255": "private (RFC 1918)",
    "172.16.0.1": "private (RFC 1918)",
    "172.31.255.255": "private (RFC 1918)",
    "192.168.1.1": "private (RFC 1918)",
    "169.254.169.254": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.255": "CGNAT",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "254.1.1.1": "reserved",
    "192.0.0.1": "IETF protocol assignments",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "192.88.99.1": "6to4 relay",
    "192.0.0.9": None,
    "192.0.0.10": None,
    "8.8.8.8": None,
    "1.1.1.1": None,
    "9.255.255.255": None,
    "11.0.0.1": None,
    "100.63.255.255": None,
    "100.128.0.1": None,
    "126.255.255.255": None,
    "128.0.0.1": None,
    "169.253.255.255": None,
    "172.15.255.255": None,
    "172.32.0.1": None,
    "192.0.1.1": None,
    "192.167.255.255": None,
    "198.17.255.255": None,
    "198.20.0.0": None,
    "223.255.255.255": None,
    # IPv6
    "::1": "loopback",
    "::": "unspecified",
    "::ffff:127.0.0.1": "loopback, as the IPv4-mapped form of 127.0.0.1",
    "::ffff:10.0.0.1": "private (RFC 1918), as the IPv4-mapped form of 10.0.0.1",
    "::ffff:169.254.169.254": "link-local, as the IPv4-mapped form",
    "::127.0.0.1": "loopback, as the IPv4-compatible form of 127.0.0.1",
    "::2": "unspecified ('this network'), as the IPv4-compatible form of 0.0.0.2",
    "64:ff9b::127.0.0.1": "loopback, as the NAT64 form of 127.0.0.1",
    "64:ff9b::a9fe:a9fe": "link-local, as the NAT64 form of 169.254.169.254",
    "2002:7f00:1::": "loopback, as the 6to4 form of 127.0.0.1",
    "2002:c0a8:101::1": "private (RFC 1918), as the 6to4 form of 192.168.1.1",
    "::ffff:8.8.8.8": None,
    "64:ff9b::8.8.8.8": None,
    "2002:808:808::1": None,
    "64:ff9b:1::1": "local-use IPv4/IPv6 translation",
    "100::1": "discard-only",
    "2001::1": "Teredo",
    "2001:2::1": "benchmarking",
    "2001:10::1": "ORCHID",
    "2001:1ff::1": "IETF protocol assignments",
    "2001:1::1": None,
    "2001:3::1": None,
    "2001:4:112::1": None,
    "2001:20::1": None,
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "5f00::1": "segment routing",
    "fc00::1": "unique local",
    "fd12:3456:789a::1": "unique local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "febf:ffff::1": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "1::": "reserved",
    "4000::1": "reserved",
    "e000::1": "reserved",
    "2001:4860:4860::8888": None,
    "2606:4700:4700::1111": None,
    "2a00:1450:4001:82a::200e": None,
    "3ffe:ffff::1": None,
    # not addresses at all
    "localhost": "not an IP address",
    "127.0.0.1:80": "not an IP address",
    "": "not an IP address",
}


@pytest.mark.parametrize(("address", "expected"), list(EXPECTED.items()))
def test_refusal_reasons(address: str, expected: str | None) -> None:
    reason = GUARD.refusal_reason(address)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize("address", [a for a, reason in EXPECTED.items() if reason])
def test_a_guard_that_is_off_refuses_nothing(address: str) -> None:
    off = AddressGuard(block_private_networks=False)
    assert off.enabled is False
    assert off.refusal_reason(address) is None
    assert off.check("host", [address]) == [address]


def test_check_keeps_the_allowed_addresses_in_order() -> None:
    addresses = ["10.0.0.1", "2606:4700::1", "127.0.0.1", "93.184.216.34"]
    assert GUARD.check("mixed.example", addresses) == ["2606:4700::1", "93.184.216.34"]
    assert GUARD.check("none.example", []) == []


def test_check_names_the_host_the_addresses_and_why_when_none_may_be_dialled() -> None:
    with pytest.raises(BlockedAddress) as caught:
        GUARD.check("localhost", ["127.0.0.1", "::1"])
    error = caught.value
    assert isinstance(error, AgentError)
    assert (error.host, error.address) == ("localhost", "127.0.0.1")
    message = str(error)
    assert "'localhost'" in message
    assert "127.0.0.1 is loopback; ::1 is loopback" in message
    assert "allowed_networks" in message


def test_allowed_networks_let_chosen_ranges_through() -> None:
    guard = AddressGuard(
        block_private_networks=True,
        allowed_networks=["127.0.0.0/8", ipaddress.ip_network("fd00::/8"), "192.0.2.7"],
    )
    assert guard.check("h", ["127.0.0.1", "::1", "10.0.0.1"]) == ["127.0.0.1"]
    # The IPv6 forms of an allowed IPv4 address are allowed too.
    assert guard.check("h", ["::ffff:127.0.0.2", "64:ff9b::7f00:1"]) == [
        "::ffff:127.0.0.2",
        "64:ff9b::7f00:1",
    ]
    assert guard.refusal_reason("fd00::1") is None
    assert guard.refusal_reason("fc00::1") is not None
    assert guard.refusal_reason("192.0.2.7") is None
    assert guard.refusal_reason("192.0.2.8") is not None
    assert guard.allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.0.2.7/32"),
    )


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        (["10.0.0.1/8"], InvalidOption, "did you mean '10.0.0.0/8'?"),
        (["10.0.0.0/33"], InvalidOption, "'10.0.0.0/33' is not a network"),
        (["localhost"], InvalidOption, "'localhost' is not a network"),
        ([" 10.0.0.0/8"], InvalidOption, "' 10.0.0.0/8' is not a network"),
        (["10.0.0.0/8", "fe80::/129"], InvalidOption, "'fe80::/129'"),
        (["10.0.0.0/8", 42], InvalidOptionType, "42"),
        ([ipaddress.ip_address("10.0.0.1")], InvalidOptionType, "IPv4Address('10.0.0.1')"),
        ("10.0.0.0/8", InvalidOptionType, "got '10.0.0.0/8'"),
        (None, InvalidOptionType, "got None"),
    ],
)
def test_bad_allowed_networks_are_named(value: object, error: type, fragment: str) -> None:
    with pytest.raises(error, match="allowed_networks") as caught:
        AddressGuard(block_private_networks=True, allowed_networks=value)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    with pytest.raises(error):
        parse_networks(value)


def test_rules_do_not_depend_on_ipaddress_is_private() -> None:
    """Pin the answers where CPython releases disagreed with each other or with IANA."""
    assert GUARD.refusal_reason("192.0.0.9") is None  # is_private was True before 3.12.4
    assert GUARD.refusal_reason("100.64.0.1") is not None  # is_private is False
    assert GUARD.refusal_reason("::ffff:127.0.0.1") is not None  # is_private is False pre-3.13
    assert GUARD.refusal_reason("2001:4:112::1") is None


# --------------------------------------------------------------------------- property tests

ipv4_addresses = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def _ipv6_forms(v4: ipaddress.IPv4Address) -> dict[str, ipaddress.IPv6Address]:
    value = int(v4)
    return {
        "IPv4-mapped": ipaddress.IPv6Address((0xFFFF << 32) | value),
        "NAT64": ipaddress.IPv6Address((0x64FF9B << 96) | value),
        "6to4": ipaddress.IPv6Address((0x2002 << 112) | (value << 80)),
        "IPv4-compatible": ipaddress.IPv6Address(value),
    }


@settings(max_examples=500, deadline=None)
@given(ipv4_addresses)
def test_ipv6_forms_of_an_ipv4_address_share_its_fate(v4: ipaddress.IPv4Address) -> None:
    reason = GUARD.refusal_reason(str(v4))
    for form, v6 in _ipv6_forms(v4).items():
        if form == "IPv4-compatible" and int(v4) <= 1:
            continue  # :: and ::1 are IPv6's own unspecified and loopback addresses
        v6_reason = GUARD.refusal_reason(str(v6))
        if reason is None:
            assert v6_reason is None, (form, v6)
        else:
            assert v6_reason == f"{reason}, as the {form} form of {v4}", (form, v6)


@settings(max_examples=200, deadline=None)
@given(ipv4_addresses, st.integers(8, 32))
def test_an_allowed_ipv4_range_allows_its_ipv6_forms(v4: ipaddress.IPv4Address, bits: int) -> None:
    network = ipaddress.IPv4Network((int(v4) >> (32 - bits) << (32 - bits), bits))
    guard = AddressGuard(block_private_networks=True, allowed_networks=[network])
    assert guard.refusal_reason(str(v4)) is None
    for v6 in _ipv6_forms(v4).values():
        if int(v6) > 1:
            assert guard.refusal_reason(str(v6)) is None, v6


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
def test_only_global_unicast_ipv6_outside_the_carrying_ranges_can_pass(
    v6: ipaddress.IPv6Address,
) -> None:
    reason = GUARD.refusal_reason(str(v6))
    in_global_unicast = v6 in ipaddress.ip_network("2000::/3")
    carries_ipv4 = v6.ipv4_mapped is not None or int(v6) >> 32 in (0, 0x64FF9B << 64)
    if not in_global_unicast and not carries_ipv4:
        assert reason is not None
