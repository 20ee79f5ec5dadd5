"""What a KVM host offers to put machines on: its libvirt networks and host bridges, and its
storage pools with their free space, read over a read-only connection."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from octoprov.targets.base import InventoryInterface, NetworkView, StorageView
from octoprov.targets.libvirt.connection import Connection, open_connection
from octoprov.targets.libvirt.placement import host_bridges

if TYPE_CHECKING:
    from octoprov.context import NodeInfo


def inventory_for_node(node: NodeInfo) -> LibvirtInventory:
    return LibvirtInventory(node.endpoint or "", node.credentials, node.options)


class LibvirtInventory(InventoryInterface):
    def __init__(self, uri: str, credentials: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        self.uri = uri
        self.credentials = credentials
        self.options = options or {}

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        conn = open_connection(self.uri, self.credentials, self.options, read_only=True)
        try:
            yield conn
        finally:
            conn.close()

    def networks(self) -> list[NetworkView]:
        with self._connection() as conn:
            found = []
            for net in conn.listAllNetworks():
                root = ET.fromstring(net.XMLDesc(0))  # noqa: S314
                bridge = root.find("bridge")
                forward = root.find("forward")
                found.append(NetworkView(
                    name=net.name(), type="libvirt-network", active=bool(net.isActive()),
                    bridge=bridge.get("name") if bridge is not None else None,
                    # libvirt applies VLAN tags on Open vSwitch networks and on hostdev/passthrough forwards
                    vlan_capable=root.find("virtualport[@type='openvswitch']") is not None
                    or (forward is not None and forward.get("mode") in ("hostdev", "passthrough")),
                ))
            for iface in host_bridges(conn):
                found.append(NetworkView(name=iface, type="bridge", active=True, bridge=iface, vlan_capable=True))
            return found

    def storage(self) -> list[StorageView]:
        with self._connection() as conn:
            found = []
            for pool in conn.listAllStoragePools():
                _state, capacity, _allocation, available = pool.info()
                root = ET.fromstring(pool.XMLDesc(0))  # noqa: S314
                path = root.findtext("target/path")
                found.append(StorageView(
                    name=pool.name(), type=root.get("type", "unknown"), active=bool(pool.isActive()), path=path,
                    capacity_bytes=capacity, free_bytes=available,
                ))
            return found
