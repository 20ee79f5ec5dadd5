"""What a vSphere node offers to put machines on: the port groups of its compute resource (standard and
distributed, with their VLAN) and its datastores with their free space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.targets.base import InventoryInterface, NetworkView, StorageView
from octoprov.targets.vmware import placement
from octoprov.targets.vmware.connection import Connect, vsphere_session
from octoprov.targets.vmware.options import vsphere_options

if TYPE_CHECKING:
    from octoprov.context import NodeInfo


def inventory_for_node(node: NodeInfo) -> VsphereInventory:
    return VsphereInventory(node)


class VsphereInventory(InventoryInterface):
    def __init__(self, node: NodeInfo, connect: Connect | None = None) -> None:
        self.node = node
        self._connect = connect

    def networks(self) -> list[NetworkView]:
        """One entry per port group; ``bridge`` names its VLAN (vSphere tags on the port group, so every
        port group is VLAN-capable)."""
        with vsphere_session(self.node, self._connect) as si:
            content = si.RetrieveContent()
            options = vsphere_options(self.node.options)
            compute = placement.compute_resource(content, placement.datacenter(content, options), options)
            return [NetworkView(name=group.name, type=f"vsphere-{group.kind}-portgroup", active=True,
                                bridge=_vlan_label(group.vlan), vlan_capable=True)
                    for group in placement.port_groups(compute)]

    def storage(self) -> list[StorageView]:
        with vsphere_session(self.node, self._connect) as si:
            content = si.RetrieveContent()
            options = vsphere_options(self.node.options)
            compute = placement.compute_resource(content, placement.datacenter(content, options), options)
            return [StorageView(name=ds.name, type=f"datastore-{str(ds.summary.type).lower()}",
                                active=bool(ds.summary.accessible), path=ds.summary.url,
                                capacity_bytes=ds.summary.capacity, free_bytes=ds.summary.freeSpace)
                    for ds in sorted(compute.datastore, key=lambda ds: ds.name)]


def _vlan_label(vlan: int | None) -> str:
    return "trunk" if vlan is None else f"VLAN {vlan}" if vlan else "no VLAN"
