"""Where a task's VM goes on a vSphere node: its datacenter, the cluster or host whose root resource
pool runs it, the datastore for its files and disks, and the port group its NIC joins, each found by
name (the node's ``vsphere`` options, the request's ``vm.network``) or defaulting as the options say.
A name that is not there is a PermanentError saying what the node has instead."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from octoprov.errors import PermanentError
from octoprov.targets.vmware.connection import load_vim
from octoprov.targets.vmware.options import VsphereOptions

STANDARD, DISTRIBUTED = "standard", "distributed"


@dataclass(frozen=True)
class PortGroup:
    """A port group a NIC can join: a standard one (by network name) or a distributed one (by its
    switch's UUID and its key). ``vlan``: its VLAN id, 0 for none, None for a trunk or private VLAN."""

    name: str
    kind: str
    network: Any  # vim.Network
    vlan: int | None
    switch_uuid: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Placement:
    datacenter: Any  # vim.Datacenter
    compute: Any  # vim.ComputeResource (a cluster or a standalone host)
    datastore: Any  # vim.Datastore
    port_group: PortGroup


def _named(items: Iterable[Any], name: str | None, what: str, where: str) -> Any:
    found = list(items)
    if name is None:
        if not found:
            raise PermanentError(f"{where} has no {what}")
        return found[0]
    for item in found:
        if item.name == name:
            return item
    names = ", ".join(item.name for item in found) or "none"
    raise PermanentError(f"no {what} called {name} in {where} (it has: {names})")


def datacenter(content: Any, options: VsphereOptions) -> Any:
    vim = load_vim()

    return _named(_entities(content, content.rootFolder, vim.Datacenter), options.datacenter, "datacenter",
                  "the node")


def compute_resource(content: Any, dc: Any, options: VsphereOptions) -> Any:
    vim = load_vim()

    return _named(_entities(content, dc.hostFolder, vim.ComputeResource), options.compute_resource,
                  "cluster or host", f"datacenter {dc.name}")


def datastore(compute: Any, options: VsphereOptions) -> Any:
    """The named datastore of the compute resource, else its accessible one with the most free space."""
    stores = list(compute.datastore)
    if options.datastore is None:
        usable = [ds for ds in stores if ds.summary.accessible]
        if not usable:
            raise PermanentError(f"{compute.name} has no accessible datastore")
        return max(usable, key=lambda ds: ds.summary.freeSpace)
    found = _named(stores, options.datastore, "datastore", compute.name)
    if not found.summary.accessible:
        raise PermanentError(f"datastore {found.name} is not accessible")
    return found


def port_groups(compute: Any) -> list[PortGroup]:
    """The port groups the compute resource's hosts can reach, standard and distributed."""
    vim = load_vim()

    vlans: dict[str, int] = {}
    for host in compute.host:
        network = host.config.network if host.config else None
        for group in (network.portgroup if network else None) or []:
            vlans.setdefault(group.spec.name, group.spec.vlanId)
    found = []
    for net in compute.network:
        if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
            config = net.config
            if config.distributedVirtualSwitch is None or _uplinks(config):
                continue
            found.append(PortGroup(net.name, DISTRIBUTED, net, _dv_vlan(config),
                                   config.distributedVirtualSwitch.uuid, config.key))
        elif type(net) is vim.Network:
            found.append(PortGroup(net.name, STANDARD, net, vlans.get(net.name, 0)))
    return found


def port_group(compute: Any, name: str | None, vlan: int | None) -> PortGroup:
    """The request's port group (``vm.network.vswitch``); on a VLAN (``vm.network.vlan``) it must carry
    that VLAN, and without a name the first that does is taken. vSphere sets VLANs on port groups, not NICs."""
    groups = port_groups(compute)
    if name is None:
        if vlan is None:
            raise PermanentError("name a port group (vm.network.vswitch) or a VLAN (vm.network.vlan)")
        carrying = [group for group in groups if group.vlan == vlan]
        if carrying:
            return carrying[0]
        raise PermanentError(f"no port group of {compute.name} carries VLAN {vlan}")
    group: PortGroup = _named(groups, name, "port group", compute.name)
    if vlan is not None and group.vlan != vlan:
        carries = f"VLAN {group.vlan}" if group.vlan else "no VLAN" if group.vlan == 0 else "a trunk"
        raise PermanentError(f"port group {name} carries {carries}, not VLAN {vlan}")
    return group


def place(content: Any, options: VsphereOptions, network: str | None, vlan: int | None) -> Placement:
    dc = datacenter(content, options)
    compute = compute_resource(content, dc, options)
    return Placement(dc, compute, datastore(compute, options), port_group(compute, network, vlan))


def _entities(content: Any, root: Any, kind: Any) -> list[Any]:
    view = content.viewManager.CreateContainerView(root, [kind], True)
    try:
        return sorted(view.view, key=lambda item: item.name)
    finally:
        view.Destroy()


def _uplinks(config: Any) -> bool:
    """A switch's uplink port group, which carries no VMs: flagged ``uplink`` (vSphere 6.5 and later; the
    simulator leaves it unset) or named ``<switch>-DVUplinks-<n>`` as vCenter names them."""
    return bool(getattr(config, "uplink", False)) or "-DVUplinks-" in config.name


def _dv_vlan(config: Any) -> int | None:
    vim = load_vim()

    setting = getattr(config.defaultPortConfig, "vlan", None)
    if setting is None:
        return 0
    if isinstance(setting, vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec):
        return int(setting.vlanId)
    return None
