"""Powering a task's VM on and off (Start-VM; Stop-VM -TurnOff, as the machine has nothing to save)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.targets.base import PowerInterface
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.options import hyperv_options
from octoprov.targets.hyperv.vms import HostDriver, required_vm

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class HyperVPower(HostDriver, PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        with self._host(ctx) as host:
            vm = required_vm(host, ctx)
            if vm.get("State") == "Running":
                return "Already running"
            host.run(commands.start_vm(ctx.hostname))
            iso = hyperv_options(ctx.node.options if ctx.node else None).boot_mode == "iso"
            if iso and vm.get("Generation") == 2:
                host.run(commands.press_enter(ctx.hostname))
        return "Powered on; booting the installation DVD" if iso else "Powered on; booting from the network"

    def power_off(self, ctx: TaskContext) -> str:
        with self._host(ctx, cancellable=False) as host:
            vm = required_vm(host, ctx)
            if vm.get("State") == "Off":
                return "Already off"
            host.run(commands.stop_vm(ctx.hostname))
            return "Powered off"
