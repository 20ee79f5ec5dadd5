"""Powering a task's VM on and off (a hard power-off: the machine has nothing to save)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.targets.base import PowerInterface
from octoprov.targets.vmware.connection import wait_for
from octoprov.targets.vmware.vms import VsphereDriver, is_on, required_vm
from octoprov.targets.vmware.vmspec import network_first

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class VspherePower(VsphereDriver, PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        with self._session(ctx) as si:
            vm = required_vm(si.RetrieveContent(), ctx)
            if is_on(vm):
                return "Already running"
            wait_for(vm.PowerOnVM_Task(), ctx.check_cancelled)
            return "Powered on; booting from the network" if network_first(vm) else "Powered on; booting from disk"

    def power_off(self, ctx: TaskContext) -> str:
        with self._session(ctx) as si:
            vm = required_vm(si.RetrieveContent(), ctx)
            if not is_on(vm):
                return "Already off"
            wait_for(vm.PowerOffVM_Task())
            return "Powered off"
