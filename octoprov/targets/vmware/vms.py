"""A task's VM on its vSphere node, as the compute, power and boot drivers share it: a session per
step, and finding the VM by name in its datacenter. Only a VM whose annotation carries the task's tag
is the task's; one of that name made by anything else is never touched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from octoprov.errors import PermanentError
from octoprov.targets import tags
from octoprov.targets.vmware.connection import Connect, ServiceInstance, load_vim, vsphere_session, wait_for
from octoprov.targets.vmware.options import vsphere_options
from octoprov.targets.vmware.placement import datacenter
from octoprov.validation.macs import canonical_mac

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class VsphereDriver:
    """Base of the compute, power and boot drivers. ``connect`` (a node → a logged-in service instance)
    replaces :func:`octoprov.targets.vmware.connection.open_session`."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect

    @contextlib.contextmanager
    def _session(self, ctx: TaskContext) -> Iterator[ServiceInstance]:
        with vsphere_session(ctx.node, self._connect) as si:
            yield si


def find_vm(content: Any, ctx: TaskContext, name: str) -> Any | None:
    """The VM called ``name`` in the node's datacenter, or None; two of that name are refused."""
    vim = load_vim()

    dc = datacenter(content, vsphere_options(ctx.node.options if ctx.node else None))
    view = content.viewManager.CreateContainerView(dc.vmFolder, [vim.VirtualMachine], True)
    try:
        found = [vm for vm in view.view if vm.name == name]
    finally:
        view.Destroy()
    if len(found) > 1:
        raise PermanentError(f"{len(found)} VMs called {name} exist in datacenter {dc.name}; Octoprov will not guess")
    return found[0] if found else None


def own_vm(content: Any, ctx: TaskContext) -> Any | None:
    """This task's VM, or None when there is none; refused when the name belongs to another."""
    vm = find_vm(content, ctx, ctx.hostname)
    if vm is None:
        return None
    owner, _complete = tags.task_of(vm.config.annotation if vm.config else None)
    if owner != ctx.task_id:
        who = f"task {owner}" if owner is not None else "no Octoprov task"
        raise PermanentError(f"a VM called {ctx.hostname} already exists on the node and belongs to {who}")
    return vm


def required_vm(content: Any, ctx: TaskContext) -> Any:
    vm = own_vm(content, ctx)
    if vm is None:
        raise PermanentError(f"no VM called {ctx.hostname} on the node")
    return vm


def is_on(vm: Any) -> bool:
    vim = load_vim()

    return bool(vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn)


def reconfigure(vm: Any, spec: Any, ctx: TaskContext | None = None) -> None:
    wait_for(vm.ReconfigVM_Task(spec=spec), ctx.check_cancelled if ctx else None)


def mac_of(vm: Any) -> str:
    from octoprov.targets.vmware.vmspec import first_nic

    card = first_nic(vm)
    if card is None or not card.macAddress:
        raise PermanentError(f"{vm.name} has no network adapter with a MAC address")
    try:
        return canonical_mac(card.macAddress)
    except ValueError as exc:
        raise PermanentError(f"{vm.name}: the MAC vSphere reports is unusable: {exc}") from None
