"""What a task's VM boots: the network (PXE, the default), or in ISO mode the installation DVD with
the answer ISO beside it, built here and copied to the host over the same PSRP connection."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from octoprov.answerfiles.dvd import answer_iso, dvd_answer_file
from octoprov.errors import PermanentError
from octoprov.secureboot import wait_until_off
from octoprov.targets.base import BootInterface
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.commands import VmPlan
from octoprov.targets.hyperv.options import hyperv_options
from octoprov.targets.hyperv.vms import HostDriver, plan_on_host, required_vm
from octoprov.winrm.commands import cmdlet, pipeline
from octoprov.winrm.powershell import HostSession

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class HyperVBoot(HostDriver, BootInterface):
    def prepare_boot(self, ctx: TaskContext) -> str:
        with self._host(ctx) as host:
            plan = plan_on_host(ctx, host)
            vm = required_vm(host, ctx)
            if plan.boot_mode == "pxe":
                for command in commands.boot_order(plan):
                    host.run(command)
                return "Network boot first"
            put_answer_iso(host, plan, dvd_answer_file(ctx))
            for command in [*commands.attach_isos(plan, vm.get("Dvds") or []), *commands.boot_order(plan)]:
                host.run(command)
            return f"Answer ISO {plan.answer_iso} attached beside {plan.install_iso}; DVD first"

    def boot_from_disk(self, ctx: TaskContext) -> str:
        """Set-VMFirmware -FirstBootDevice with the OS disk (Set-VMBios -StartupOrder, IDE first, on
        generation 1): the VM's own setting, so its next restart needs no Octoprov (not yet tried on a real
        host). One command, whole or not at all, and setting it again changes nothing."""
        with self._host(ctx) as host:
            plan = plan_on_host(ctx, host)
            required_vm(host, ctx)
            for command in commands.disk_first(plan):
                host.run(command)
        if plan.generation == 1:
            return "Boot order set: IDE (the OS disk) first"
        return f"Boot order set: {plan.disks[0].path} first"

    def enable_secure_boot(self, ctx: TaskContext) -> str:
        """Once WinPE has shut the VM down after reporting Windows applied: Set-VMFirmware with Secure Boot
        on and the host's template (Hyper-V refuses it on a running VM), the OS disk first, Start-VM. A VM
        already running with Secure Boot on means a repeated step: nothing is done."""
        with self._host(ctx) as host:
            plan = plan_on_host(ctx, host)
            vm = required_vm(host, ctx)
            if vm.get("State") == "Running" and vm.get("SecureBoot") == "On":
                return "Secure Boot on already; the VM is running"
            seen = [vm]  # the VM as last read
            wait_until_off(ctx, lambda: seen[-1].get("State") == "Off", poll_s=2,
                           refresh=lambda: seen.append(required_vm(host, ctx)))
            for command in [*commands.firmware(dataclasses.replace(plan, secure_boot=True)),
                            *commands.disk_first(plan), commands.start_vm(ctx.hostname)]:
                host.run(command)
        return f"Secure Boot on ({plan.secure_boot_template}), {plan.disks[0].path} first; VM started"

    def cleanup_boot(self, ctx: TaskContext) -> str:
        """Rollback removes the answer ISO with the VM; this catches one left without it."""
        if hyperv_options(ctx.node.options if ctx.node else None).boot_mode == "pxe":
            return "Nothing to remove: the boot order goes with the machine"
        with self._host(ctx, cancellable=False) as host:
            path = answer_iso_of(plan_on_host(ctx, host))
            if not host.run(commands.existing_files([path]))[0]:
                return "no answer ISO to remove"
            host.run(pipeline(cmdlet("Remove-Item", LiteralPath=path, Force=True)))
            return f"Removed {path}"


def put_answer_iso(host: HostSession, plan: VmPlan, autounattend: str) -> None:
    """Copy the answer ISO to the host in chunks and check what arrived by its SHA-256."""
    data = answer_iso(autounattend)
    path = answer_iso_of(plan)
    *chunks, check = commands.upload(path, data)
    for command in chunks:
        host.run(command)
    arrived = "".join(str(line) for line in host.run(check)).strip().lower()
    if arrived != hashlib.sha256(data).hexdigest():
        raise PermanentError(f"the answer ISO copied to {path} on {host.where.label} does not match "
                             "what was sent")


def answer_iso_of(plan: VmPlan) -> str:
    """Where the answer ISO goes on the host; only ISO mode has one."""
    if plan.answer_iso is None:
        raise PermanentError(f"{plan.name} boots from the network: it has no answer ISO")
    return plan.answer_iso
