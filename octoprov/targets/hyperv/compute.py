"""Creating and removing a task's VM on a Hyper-V host, and checking a request against the host."""

from __future__ import annotations

import ntpath
from typing import TYPE_CHECKING, Any

from octoprov.errors import InvalidRequest, PermanentError, TargetUnreachable
from octoprov.targets import tags
from octoprov.targets.base import ComputeInterface, Machine
from octoprov.targets.checks import check_disks_fit, refuse_leftovers
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.options import hyperv_options
from octoprov.targets.hyperv.vms import HostDriver, find_vm, mac_of, own_vm, plan_on_host
from octoprov.winrm.connection import node_endpoint
from octoprov.winrm.powershell import HostSession, host_session

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec


class HyperVCompute(HostDriver, ComputeInterface):
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        """The vSwitch exists on the host and the disks fit on the volume that will hold them (all
        of them, dynamic ones too: a full volume pauses every VM on it). A host that does not answer
        now is no reason to refuse; a refused login is the node's mistake, named as such."""
        vm = spec.vm
        switch = vm.network.vswitch if vm else None
        if vm is None or not switch:
            raise InvalidRequest({"vm.network.vswitch": "required for Hyper-V: the virtual switch the VM connects to"})
        if node is None or not node.endpoint:
            return
        try:
            options = hyperv_options(node.options)
            iso = options.install_iso if options.boot_mode == "iso" else None
            with host_session(node_endpoint(node), self._connect) as host:
                switches = host.json(commands.read_switches())[0]
                storage = host.json(commands.read_host_storage())[0]
                if iso and not host.run(commands.existing_files([iso]))[0]:
                    raise InvalidRequest({"hypervisorNodeId": f"the installation ISO {iso} of node {node.name} "
                                                              "does not exist on the host"})
        except TargetUnreachable:
            return
        except PermanentError as exc:
            raise InvalidRequest({"hypervisorNodeId": exc.message}) from None
        names = [item["Name"] for item in switches or []]
        if switch not in names:
            raise InvalidRequest({"vm.network.vswitch": f"no virtual switch called {switch} on {node.name} "
                                                        f"(it has: {', '.join(names) or 'none'})"})
        directory = vm.storage_path or storage["VirtualHardDiskPath"]
        volume = volume_of(directory, storage.get("Volumes") or [])
        if volume is None:
            if vm.storage_path:
                raise InvalidRequest({"vm.storagePath": f"{directory} is on no local volume of {node.name}"})
            return
        check_disks_fit(vm.disks, volume["FreeBytes"], f"on {volume['Name']} of {node.name}")

    def create_machine(self, ctx: TaskContext) -> Machine:
        """Adopt this task's complete VM; remove one an interrupted attempt left half-made (its tag
        still says ``creating``) and create it again; refuse VHDX files that exist without it."""
        with self._host(ctx) as host:
            plan = plan_on_host(ctx, host)
            vm = own_vm(host, ctx)
            if vm is not None:
                if tags.task_of(vm.get("Notes"))[1]:
                    return Machine(vm["Id"], _mac(vm), f"Adopted {ctx.hostname} created by an earlier attempt")
                remove(host, vm, [disk.path for disk in plan.disks])
            paths = [disk.path for disk in plan.disks]
            refuse_leftovers(paths, lambda names: host.run(commands.existing_files(list(names))),
                             f"on {host.where.label}", "remove them or choose another hostname or storagePath")
            for command in commands.create_vm(plan):
                host.run(command)
            vm = find_vm(host, ctx.hostname)
            if vm is None:
                raise PermanentError(f"{ctx.hostname} is not on {host.where.label} after the commands creating it")
            mac = _mac(vm)
            gb = plan.memory_bytes // commands.GIB
            return Machine(vm["Id"], mac, f"Created {plan.cpu} vCPU, {gb} GB RAM, {len(plan.disks)} disks in "
                                          f"{ntpath.dirname(paths[0]) if paths else '-'} on {host.where.label}; "
                                          f"MAC {mac}")

    def destroy_machine(self, ctx: TaskContext) -> str:
        with self._host(ctx, cancellable=False) as host:
            vm = own_vm(host, ctx)
            if vm is None:
                return "no machine to remove"
            removed = remove(host, vm)
            return f"Removed {ctx.hostname} and {removed} file(s) on {host.where.label}"


def remove(host: HostSession, vm: dict[str, Any], leftovers: list[str] | None = None) -> int:
    """Power off, remove the VM, delete its VHDX files and its answer ISO (the installation ISO is
    not the task's). ``leftovers``: files an interrupted attempt may have made before attaching them."""
    name = vm["Name"]
    answer = (name + commands.ANSWER_ISO_SUFFIX).lower()
    files = [path for path in vm.get("Disks") or [] if path]
    files += [path for path in vm.get("Dvds") or [] if path and ntpath.basename(path).lower() == answer]
    extra = [path for path in leftovers or [] if path not in files]
    if extra:
        exists = host.run(commands.existing_files(extra))
        files += [path for path, present in zip(extra, exists, strict=True) if present]
    for command in commands.remove_vm(name, files, running=vm.get("State") != "Off"):
        host.run(command)
    return len(files)


def volume_of(path: str, volumes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The volume holding ``path``: the longest drive root it starts with (case does not matter)."""
    matches = [volume for volume in volumes if path.lower().startswith(volume["Name"].lower())]
    return max(matches, key=lambda volume: len(volume["Name"]), default=None)


def _mac(vm: dict[str, Any]) -> str:
    try:
        return mac_of(vm)
    except ValueError as exc:
        raise PermanentError(f"{vm.get('Name')}: the MAC the host reports is unusable: {exc}") from None
