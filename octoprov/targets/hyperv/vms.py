"""What the Hyper-V drivers share about one task's VM: its plan, the session to its host, and
finding it there. A VM is the task's only when its Notes carry the task's tag; one of that name
made by anything else is never touched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from octoprov.errors import PermanentError
from octoprov.targets import tags
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.commands import VmPlan
from octoprov.targets.hyperv.options import hyperv_options
from octoprov.validation.macs import canonical_mac
from octoprov.winrm.connection import Connect, node_endpoint
from octoprov.winrm.powershell import HostSession, host_session

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.taskspec import VmSpec


class HostDriver:
    """Base of the compute, power and boot drivers. ``connect`` (an endpoint → pypsrp WSMan)
    replaces :func:`octoprov.winrm.connection.open_wsman`; tests pass the fake host's."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect

    @contextlib.contextmanager
    def _host(self, ctx: TaskContext, *, cancellable: bool = True) -> Iterator[HostSession]:
        """A session on the task's host. Work toward the machine stops when the task is cancelled;
        removing it (``cancellable=False``) is what a cancelled task needs and runs to the end."""
        check = ctx.check_cancelled if cancellable else None
        with host_session(node_endpoint(ctx.node), self._connect, check) as host:
            yield host


def vm_spec(ctx: TaskContext) -> VmSpec:
    """The request's ``vm`` section (the request's validation requires one for a Hyper-V task)."""
    if ctx.spec.vm is None:
        raise PermanentError("a Hyper-V task needs a vm section")
    return ctx.spec.vm


def storage_dirs(host: HostSession | None, storage_path: str | None) -> tuple[str | None, str]:
    """(VM folder, VHDX folder): the request's ``vm.storagePath`` for both, as the spec's script
    does, else the host's defaults (the VM folder is then left to New-VM)."""
    if storage_path:
        return storage_path, storage_path
    if host is None:
        return None, "<VirtualHardDiskPath of the host>"
    default: str = host.json(commands.read_host_storage())[0]["VirtualHardDiskPath"]
    return None, default


def vm_plan(ctx: TaskContext, vm_path: str | None, vhd_dir: str) -> VmPlan:
    """The plan from the request as validated: its defaults (generation 2, Secure Boot on for
    generation 2) are already decided there."""
    vm = vm_spec(ctx)
    options = hyperv_options(ctx.node.options if ctx.node else None)
    iso = options.boot_mode == "iso"
    return VmPlan(
        name=ctx.hostname, task_id=ctx.task_id, generation=vm.generation, cpu=vm.cpu,
        memory_bytes=vm.memory_gb * commands.GIB, vm_path=vm_path,
        disks=commands.disk_plans(ctx.hostname, vhd_dir, vm.disks),
        switch=vm.network.vswitch or "", vlan=vm.network.vlan,
        mac=ctx.mac_address or commands.task_mac(ctx.task_id),
        # VmSpec decides it (on for generation 2 unless the request says off); an unsigned installer (WinPE over
        # PXE) runs with it off and enable_secure_boot turns it on before Windows first starts
        secure_boot=bool(vm.secureboot) and not ctx.secure_boot_after_install,
        secure_boot_template=ctx.settings.hyperv_secure_boot_template, boot_mode=options.boot_mode,
        install_iso=options.install_iso, answer_iso=commands.answer_iso_path(vhd_dir, ctx.hostname) if iso else None,
    )


def plan_on_host(ctx: TaskContext, host: HostSession | None) -> VmPlan:
    return vm_plan(ctx, *storage_dirs(host, vm_spec(ctx).storage_path))


def find_vm(host: HostSession, name: str) -> dict[str, Any] | None:
    found = host.json(commands.read_vm(name))
    if len(found) > 1:
        raise PermanentError(f"{len(found)} VMs called {name} exist on {host.where.label}; Octoprov will not guess")
    return found[0] if found else None


def own_vm(host: HostSession, ctx: TaskContext) -> dict[str, Any] | None:
    """This task's VM, or None when there is none; refused when the name belongs to another."""
    vm = find_vm(host, ctx.hostname)
    if vm is None:
        return None
    owner, _complete = tags.task_of(vm.get("Notes"))
    if owner != ctx.task_id:
        who = f"task {owner}" if owner is not None else "no Octoprov task"
        raise PermanentError(f"a VM called {ctx.hostname} already exists on {host.where.label} and belongs to {who}")
    return vm


def required_vm(host: HostSession, ctx: TaskContext) -> dict[str, Any]:
    vm = own_vm(host, ctx)
    if vm is None:
        raise PermanentError(f"no VM called {ctx.hostname} on {host.where.label}")
    return vm


def mac_of(vm: dict[str, Any]) -> str:
    adapters = vm.get("Adapters") or []
    if not adapters or not adapters[0].get("MacAddress"):
        raise PermanentError(f"{vm.get('Name')} has no network adapter with a MAC address")
    return canonical_mac(adapters[0]["MacAddress"])
