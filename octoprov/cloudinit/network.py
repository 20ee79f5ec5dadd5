"""NoCloud ``network-config`` (version 2): the request's DHCP or static IPv4 for the machine's NIC.

The interface is matched by the MAC the hypervisor gave it, not by a kernel name that differs
between images (``ens3``, ``enp1s0``), and renamed ``eth0`` so every renderer cloud-init has
(netplan, ENI, networkd, sysconfig) writes the same thing. The default route is written as a
route to ``0.0.0.0/0``, which every cloud-init version reads, rather than the deprecated
``gateway4`` or ``to: default`` (not understood before cloud-init 23).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from octoprov.cloudinit.yamldoc import dump
from octoprov.validation import parse_subnet

if TYPE_CHECKING:
    from octoprov.taskspec import NetworkSpec

INTERFACE = "eth0"


def network_config(mac_address: str, network: NetworkSpec, search_domain: str | None = None) -> str:
    """``network`` is the request's ``network`` section: DHCP, or a static ``ip``, ``subnet`` and
    ``gateway`` (DNS servers are kept for DHCP too)."""
    interface: dict[str, Any] = {"match": {"macaddress": mac_address.lower()}, "set-name": INTERFACE}
    if network.mode == "static":
        if network.ip is None or network.subnet is None:  # NetworkSpec refuses that; stated for the types
            raise ValueError("a static network needs an ip and a subnet")
        interface["dhcp4"] = False
        interface["addresses"] = [f"{network.ip}/{parse_subnet(network.subnet)}"]
        if network.gateway:
            interface["routes"] = [{"to": "0.0.0.0/0", "via": network.gateway}]
    else:
        interface["dhcp4"] = True
    nameservers: dict[str, list[str]] = {}
    if network.dns:
        nameservers["addresses"] = list(network.dns)
    if search_domain:
        nameservers["search"] = [search_domain]
    if nameservers:
        interface["nameservers"] = nameservers
    return dump({"version": 2, "ethernets": {INTERFACE: interface}})
