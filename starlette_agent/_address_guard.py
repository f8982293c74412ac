"""Which addresses the agent may connect to: the SSRF policy.

Theory of operation: a URL names a host, the resolver turns the host into addresses, and the
connect code asks ``AddressGuard.check`` which of them may be dialled, then dials only those, in
the order given, without resolving again (so a name that resolves once to a public address and
then to 127.0.0.1 cannot slip through). The guard is pure and synchronous: no I/O, no DNS. It
judges addresses, never names, so ``localhost``, ``2130706433`` and a public name pointing at
10.0.0.1 are refused alike, for the address they reach.

The rules are a table of the IANA special-purpose IPv4 and IPv6 ranges that are not globally
reachable, each with the reason an error gives. The most specific matching range decides, which
lets a globally reachable range inside a blocked one (192.0.0.9/32, 2001:3::/32) through. The
table is explicit because ``ipaddress``'s ``is_private`` and ``is_global`` changed their answers
across CPython patch releases. IPv6 ranges that carry an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeAlias

from ._errors import BlockedAddress, InvalidOption, InvalidOptionType

__all__ = ["AddressGuard", "Network", "parse_networks"]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_Carried: TypeAlias = Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address | None]

# (range, why it is refused); None marks a globally reachable range inside a refused one.
_IPV4_RANGES: tuple[tuple[str, str | None], ...] = (
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.0.9/32", None),  # Port Control Protocol anycast
    ("192.0.0.10/32", None),  # TURN anycast
    ("192.0.2.0/24", "documentation (TEST-NET-1, RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated, RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (TEST-NET-2, RFC 5737)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3, RFC 5737)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "broadcast"),
)

_IPV6_RANGES: tuple[tuple[str, str | None], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001::/32", "Teredo (RFC 4380)"),
    ("2001:1::1/128", None),  # Port Control Protocol anycast
    ("2001:1::2/128", None),  # TURN anycast
    ("2001:1::3/128", None),  # DNS-SD service registration anycast
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:3::/32", None),  # AMT
    ("2001:4:112::/48", None),  # AS112-v6
    ("2001:10::/28", "ORCHID (deprecated, RFC 4843)"),
    ("2001:20::/28", None),  # ORCHIDv2
    ("2001:30::/28", None),  # drone remote ID
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "private (unique local, RFC 4193)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated, RFC 3879)"),
    ("ff00::/8", "multicast"),
    # Outside 2000::/3 nothing is global unicast.
    ("::/3", "reserved (outside global unicast 2000::/3)"),
    ("4000::/2", "reserved (outside global unicast 2000::/3)"),
    ("8000::/1", "reserved (outside global unicast 2000::/3)"),
)


def _low_32_bits(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


# IPv6 ranges whose addresses reach an IPv4 address: (range, name of the form, the IPv4 address).
_CARRYING_IPV4: tuple[tuple[str, str, _Carried], ...] = (
    ("::ffff:0:0/96", "IPv4-mapped", lambda address: address.ipv4_mapped),
    ("::/96", "IPv4-compatible", _low_32_bits),
    ("64:ff9b::/96", "NAT64", _low_32_bits),
    ("2002::/16", "6to4", lambda address: address.sixtofour),
)


@dataclass(frozen=True, slots=True)
class _Rule:
    network: Network
    reason: str | None  # None: let through
    form: str = ""  # for the ranges that carry an IPv4 address
    carried: _Carried | None = None


def _rules() -> tuple[_Rule, ...]:
    rules = [_Rule(ipaddress.ip_network(net), reason) for net, reason in _IPV4_RANGES]
    rules += [_Rule(ipaddress.ip_network(net), reason) for net, reason in _IPV6_RANGES]
    rules += [
        _Rule(ipaddress.ip_network(net), None, form, carried)
        for net, form, carried in _CARRYING_IPV4
    ]
    # Most specific first: the first rule that contains an address decides for it.
    return tuple(sorted(rules, key=lambda rule: -rule.network.prefixlen))


_RULES = _rules()


class AddressGuard:
    """Decides which resolved addresses a connection may go to.

    Off (``block_private_networks=False``) it lets everything through. On, it refuses loopback,
    private, link-local, CGNAT, multicast, unspecified, broadcast, reserved, documentation and
    benchmarking addresses, and IPv6 forms that carry such an IPv4 address, except those in
    ``allowed_networks`` (CIDR strings or ``ipaddress`` networks; a bad one raises
    ``InvalidOption`` naming it).
    """

    __slots__ = ("allowed_networks", "enabled")

    def __init__(
        self,
        *,
        block_private_networks: bool,
        allowed_networks: Sequence[str | Network] = (),
    ) -> None:
        self.enabled: bool = bool(block_private_networks)
        self.allowed_networks: tuple[Network, ...] = parse_networks(allowed_networks)

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off"
        allowed = ", ".join(str(network) for network in self.allowed_networks)
        return f"<AddressGuard {state}{f' allowing {allowed}' if allowed else ''}>"

    def check(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses that may be connected to, in the given order.

        Raises ``BlockedAddress`` naming the host and the refused address(es) and why when none
        may. With the guard off, or no addresses, returns ``addresses`` as a list.
        """
        if not self.enabled:
            return list(addresses)
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for address in addresses:
            reason = self.refusal_reason(address)
            if reason is None:
                allowed.append(address)
            else:
                refused.append((address, reason))
        if allowed or not refused:
            return allowed
        listed = "; ".join(f"{address} is {reason}" for address, reason in refused)
        raise BlockedAddress(
            f"refused to connect to {host!r}: block_private_networks is on and every address it "
            f"resolves to is blocked: {listed}. List a range in allowed_networks to let it through",
            host=host,
            address=refused[0][0],
        )

    def refusal_reason(self, address: str) -> str | None:
        """Why ``address`` may not be connected to, or None when it may (always, when off).

        A string that is no IP address is refused, as ``'not an IP address'``.
        """
        if not self.enabled:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return "not an IP address"
        if self._allowed(ip):
            return None
        rule = _rule_for(ip)
        if rule is None:
            return None
        if rule.carried is None or not isinstance(ip, ipaddress.IPv6Address):
            return rule.reason
        carried = rule.carried(ip)
        if carried is None or self._allowed(carried):
            return None
        reason = _reason_for(carried)
        return None if reason is None else f"{reason}, as the {rule.form} form of {carried}"

    def _allowed(self, ip: _Address) -> bool:
        return any(ip in network for network in self.allowed_networks)


def _rule_for(ip: _Address) -> _Rule | None:
    # A zone ("fe80::1%eth0") does not change the range: membership compares the address bits.
    for rule in _RULES:
        if ip in rule.network:
            return rule
    return None


def _reason_for(ip: ipaddress.IPv4Address) -> str | None:
    rule = _rule_for(ip)
    return None if rule is None else rule.reason


def parse_networks(value: object, *, option: str = "allowed_networks") -> tuple[Network, ...]:
    """CIDR strings or ``ipaddress`` networks, validated; errors name ``option`` and the value."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidOptionType(
            f"{option} must be a list of CIDR strings such as ['10.0.0.0/8'], got {value!r}"
        )
    return tuple(_parse_network(item, option) for item in value)


def _parse_network(item: object, option: str) -> Network:
    if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return item
    if not isinstance(item, str):
        raise InvalidOptionType(f"{option} entries must be CIDR strings, got {item!r}")
    try:
        return ipaddress.ip_network(item)
    except ValueError as exc:
        message = f"{option}: {item!r} is not a network in CIDR notation ({exc})"
        error = exc
    with suppress(ValueError):
        # "10.0.0.1/8" has host bits set: name the network it is in, but do not guess.
        message += f"; did you mean {str(ipaddress.ip_network(item, strict=False))!r}?"
    raise InvalidOption(message) from error
