"""IPv4 addresses and static network settings.

A static address that is the subnet's network or broadcast address, or a gateway outside
the subnet, leaves the new machine unreachable after setup, with nobody to log in and fix it.
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address

_PREFIX = re.compile(r"/?[0-9]{1,2}")


def _address(value: str) -> IPv4Address:
    if isinstance(value, str):
        try:
            return IPv4Address(value)
        except AddressValueError:
            pass
        try:
            IPv6Address(value)
        except ValueError:
            pass
        else:
            raise ValueError("is an IPv6 address; only IPv4 is supported")
    raise ValueError("not an IPv4 address (expected a dotted quad such as 198.51.100.50)")


def check_ipv4(value: str) -> str:
    """Return the dotted-quad ``value``; leading zeros are refused (octal or decimal?)."""
    return str(_address(value))


def parse_subnet(value: str | int) -> int:
    """Return the prefix length of a mask (``255.255.255.0``) or prefix (``24``, ``/24``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        prefix = value
    elif isinstance(value, str) and _PREFIX.fullmatch(value):
        prefix = int(value.lstrip("/"))
    elif isinstance(value, str) and "." in value:
        try:
            mask = int(_address(value))
        except ValueError:
            raise ValueError("not a subnet mask (expected e.g. 255.255.255.0)") from None
        host_bits = ~mask & 0xFFFFFFFF
        if host_bits & (host_bits + 1):
            raise ValueError("not a contiguous subnet mask")
        prefix = 32 - host_bits.bit_length()
    else:
        raise ValueError("expected a subnet mask such as 255.255.255.0 or a prefix length such as 24")
    if not 1 <= prefix <= 32:
        raise ValueError("prefix length must be between 1 and 32")
    return prefix


def check_static_network(ip: str, subnet: str, gateway: str | None = None) -> dict[str, str]:
    """Check a static configuration; return ``{"ip"|"subnet"|"gateway": message}``, empty when fine."""
    errors: dict[str, str] = {}
    address = prefix = router = None
    try:
        address = _address(ip)
        if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_reserved:
            errors["ip"] = f"{address} is not a usable host address"
    except ValueError as exc:
        errors["ip"] = str(exc)
    try:
        prefix = parse_subnet(subnet)
    except ValueError as exc:
        errors["subnet"] = str(exc)
    if gateway is not None:
        try:
            router = _address(gateway)
        except ValueError as exc:
            errors["gateway"] = str(exc)
    if address is None or prefix is None:
        return errors

    network = IPv4Network((address, prefix), strict=False)
    reserved = {network.network_address: "network", network.broadcast_address: "broadcast"} if prefix < 31 else {}
    if "ip" not in errors and address in reserved:
        errors["ip"] = f"{address} is the {reserved[address]} address of {network}"
    if router is None:
        return errors
    if router not in network:
        errors["gateway"] = f"{router} is outside {network}, the subnet of {address}"
    elif router == address:
        errors["gateway"] = "must differ from ip"
    elif router in reserved:
        errors["gateway"] = f"{router} is the {reserved[router]} address of {network}"
    return errors
