"""Where on its host a task's domain goes: the storage pool for its volumes and the libvirt network
or host bridge its NIC joins. Creating a machine and checking a request ask the same questions, so
they get the same answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from octoprov.errors import PermanentError
from octoprov.targets.libvirt.connection import Connection, Pool, load_libvirt


def storage_pool(conn: Connection, options: dict[str, Any]) -> Pool:
    """The node's ``kvm.storagePool`` option, else the host's first active pool."""
    libvirt = load_libvirt()
    wanted = options.get("storagePool")
    if wanted:
        try:
            pool = conn.storagePoolLookupByName(wanted)
        except libvirt.libvirtError:
            raise PermanentError(f"storage pool {wanted} does not exist on the host") from None
        if not pool.isActive():
            raise PermanentError(f"storage pool {wanted} is not active")
        return pool
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        return pool
    raise PermanentError("the host has no active storage pool")


def network_for(conn: Connection, vswitch: str | None) -> tuple[str, bool]:
    """``(name, is_bridge)`` for the request's ``vm.network.vswitch``: a libvirt network of that name,
    else a host bridge. Without one, the host's first active libvirt network."""
    libvirt = load_libvirt()
    if vswitch:
        try:
            conn.networkLookupByName(vswitch)
            return vswitch, False
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                raise
            return vswitch, True
    for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        return str(net.name()), False
    raise PermanentError("the host has no active libvirt network; name a network or bridge in vm.network.vswitch")


def host_bridges(conn: Connection) -> list[str]:
    """Host bridges a domain can attach to directly (``<interface type='bridge'>``)."""
    libvirt = load_libvirt()
    try:
        interfaces = conn.listAllInterfaces()
    except libvirt.libvirtError:  # no interface backend on this host
        return []
    bridges = []
    for iface in interfaces:
        root = ET.fromstring(iface.XMLDesc(0))  # noqa: S314
        if root.get("type") == "bridge":
            bridges.append(iface.name())
    return bridges
