"""What a Hyper-V host offers: its virtual switches, and where disks go (the default VHD folder and
the local volumes, with free space)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.targets.base import InventoryInterface, NetworkView, StorageView
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.compute import volume_of
from octoprov.winrm.connection import Connect, Endpoint, node_endpoint
from octoprov.winrm.powershell import host_session

if TYPE_CHECKING:
    from octoprov.context import NodeInfo


def inventory_for_node(node: NodeInfo) -> HyperVInventory:
    return HyperVInventory(node_endpoint(node))


class HyperVInventory(InventoryInterface):
    def __init__(self, where: Endpoint, connect: Connect | None = None) -> None:
        self.where = where
        self._connect = connect

    def networks(self) -> list[NetworkView]:
        """One entry per vSwitch. VLAN tags leave the host only through an External switch (Internal and
        Private ones keep them between the host's VMs), so only those are marked VLAN-capable."""
        with host_session(self.where, self._connect) as host:
            switches = host.json(commands.read_switches())[0] or []
        return [NetworkView(name=item["Name"], type=f"vswitch-{str(item['SwitchType']).lower()}", active=True,
                            bridge=item.get("NetAdapter"), vlan_capable=item["SwitchType"] == "External")
                for item in switches]

    def storage(self) -> list[StorageView]:
        with host_session(self.where, self._connect) as host:
            found = host.json(commands.read_host_storage())[0]
        volumes = found.get("Volumes") or []
        default = found["VirtualHardDiskPath"]
        holder = volume_of(default, volumes) or {}
        views = [StorageView(name="default", type="vhd-path", active=True, path=default,
                             capacity_bytes=holder.get("SizeBytes"), free_bytes=holder.get("FreeBytes"))]
        for volume in volumes:
            label = f" ({volume['Label']})" if volume.get("Label") else ""
            kind = f"volume-{str(volume.get('FileSystem')).lower()}"
            views.append(StorageView(name=volume["Name"] + label, type=kind, active=True, path=volume["Name"],
                                     capacity_bytes=volume["SizeBytes"], free_bytes=volume["FreeBytes"]))
        return views
