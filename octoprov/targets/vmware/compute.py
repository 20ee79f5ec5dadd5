"""Creating and removing a task's VM on a vSphere node, and checking a request against what the node
offers before it is accepted (the same checks as KVM's: :mod:`octoprov.targets.checks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from octoprov.errors import InvalidRequest, PermanentError, TargetUnreachable
from octoprov.targets import tags
from octoprov.targets.base import ComputeInterface, Machine
from octoprov.targets.checks import check_disks_fit, refuse_leftovers, refused_as
from octoprov.targets.vmware import placement
from octoprov.targets.vmware.connection import load_vim, vsphere_session, wait_for
from octoprov.targets.vmware.options import vsphere_options
from octoprov.targets.vmware.vms import VsphereDriver, is_on, mac_of, own_vm, reconfigure
from octoprov.targets.vmware.vmspec import (
    MAX_DISKS,
    VmPlan,
    boot_spec,
    create_spec,
    disk_path,
    vm_plan,
    vm_spec,
)

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec


def placement_for(content: Any, ctx: TaskContext) -> placement.Placement:
    vm = vm_spec(ctx)
    return placement.place(content, vsphere_options(ctx.node.options if ctx.node else None), vm.network.vswitch,
                           vm.network.vlan)


class VsphereCompute(VsphereDriver, ComputeInterface):
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        """The datacenter, cluster or host and datastore of the node's options exist, the port group (and its
        VLAN) does, and the disks fit in the datastore's free space. A node that does not answer now is no
        reason to refuse: the worker retries it later."""
        vm = spec.vm
        if vm is None or not (vm.network.vswitch or vm.network.vlan):
            raise InvalidRequest({"vm.network.vswitch": "required for vSphere: the port group the VM connects to"})
        if len(vm.disks) > MAX_DISKS:
            raise InvalidRequest({"vm.disks": f"at most {MAX_DISKS} disks on vSphere"})
        if node is None or not node.endpoint:
            return
        options = vsphere_options(node.options)
        try:
            with vsphere_session(node, self._connect) as si:
                content = si.RetrieveContent()
                dc = refused_as("hypervisorNodeId", node.name, lambda: placement.datacenter(content, options))
                compute = refused_as("hypervisorNodeId", node.name,
                                     lambda: placement.compute_resource(content, dc, options))
                store = refused_as("hypervisorNodeId", node.name, lambda: placement.datastore(compute, options))
                field = "vm.network.vlan" if vm.network.vlan is not None else "vm.network.vswitch"
                if vm.network.vswitch is not None:
                    refused_as("vm.network.vswitch", node.name,
                               lambda: placement.port_group(compute, vm.network.vswitch, None))
                refused_as(field, node.name, lambda: placement.port_group(compute, vm.network.vswitch, vm.network.vlan))
                check_disks_fit(vm.disks, store.summary.freeSpace, f"on datastore {store.name} of {node.name}")
        except TargetUnreachable:
            return
        except PermanentError as exc:
            raise InvalidRequest({"hypervisorNodeId": exc.message}) from None

    def create_machine(self, ctx: TaskContext) -> Machine:
        """Adopt this task's complete VM; remove one an interrupted attempt left half-made (its tag still
        says ``creating``) and create it again; refuse VMDK files of the VM's names found in its folder
        without it (:func:`leftover_disks`). The VM is tagged by the spec that creates it, its boot
        order set (network first) once vSphere has keyed its devices, and the tag then marked complete."""
        plan = vm_plan(ctx)
        with self._session(ctx) as si:
            content = si.RetrieveContent()
            where = placement_for(content, ctx)
            vm = own_vm(content, ctx)
            if vm is not None:
                if tags.task_of(vm.config.annotation)[1]:
                    return Machine(vm.config.instanceUuid or vm._moId, mac_of(vm),
                                   f"Adopted {ctx.hostname} created by an earlier attempt")
                remove(vm)
            refuse_leftovers([disk_path(where.datastore.name, plan.name, disk) for disk in plan.disks],
                             lambda paths: leftover_disks(where.datastore, plan.name, paths, ctx),
                             f"on datastore {where.datastore.name}")
            task = where.datacenter.vmFolder.CreateVM_Task(config=create_spec(plan, where),
                                                           pool=where.compute.resourcePool)
            vm = wait_for(task, ctx.check_cancelled)
            reconfigure(vm, boot_spec(vm, network_first=True, tag=plan.tag))
            mac = mac_of(vm)
            return Machine(vm.config.instanceUuid or vm._moId, mac, _created(plan, where, mac))

    def destroy_machine(self, ctx: TaskContext) -> str:
        """Power off and destroy the VM, which deletes its folder and the disks in it."""
        with self._session(ctx) as si:
            vm = own_vm(si.RetrieveContent(), ctx)
            if vm is None:
                return "no machine to remove"
            disks = remove(vm)
            return f"Removed {ctx.hostname} and its {disks} disk(s)"


def remove(vm: Any) -> int:
    """Power the VM off and destroy it with its files; the number of disks it had."""
    vim = load_vim()

    disks = sum(isinstance(d, vim.vm.device.VirtualDisk) for d in vm.config.hardware.device) if vm.config else 0
    if is_on(vm):
        wait_for(vm.PowerOffVM_Task())
    wait_for(vm.Destroy_Task())
    return disks


def leftover_disks(store: Any, folder: str, paths: Sequence[str], ctx: TaskContext) -> list[bool]:
    """For each VMDK datastore path (``[ds] web01/web01-os.vmdk``), whether the VM's folder on the datastore
    already holds it or its extent (``web01-os-flat.vmdk``), read with the datastore browser; a folder that
    does not exist holds nothing."""
    vim = load_vim()

    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*.vmdk"])
    try:
        found = wait_for(store.browser.SearchDatastore_Task(datastorePath=f"[{store.name}] {folder}",
                                                            searchSpec=spec), ctx.check_cancelled)
    except vim.fault.FileNotFound:
        return [False] * len(paths)
    names = {item.path for item in found.file or []}
    files = [path.rpartition("/")[2] for path in paths]
    return [name in names or name.removesuffix(".vmdk") + "-flat.vmdk" in names for name in files]


def _created(plan: VmPlan, where: placement.Placement, mac: str) -> str:
    gb = plan.memory_mb // 1024
    return (f"Created {plan.cpu} vCPU, {gb} GB RAM, {len(plan.disks)} disks on datastore {where.datastore.name}, "
            f"{plan.firmware.upper()}, on port group {where.port_group.name}; MAC {mac}")
