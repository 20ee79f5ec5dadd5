"""A task's VM boots from the network while it installs (its NIC first in the boot order: the PXE services
know it by the MAC registered at creation) and from its OS disk once the OS is installed. vSphere keeps the
boot order in the VM's configuration, read at every power-on and reset, so a running VM takes it too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.secureboot import wait_until_off
from octoprov.targets.base import BootInterface
from octoprov.targets.vmware.connection import wait_for
from octoprov.targets.vmware.vms import VsphereDriver, is_on, reconfigure, required_vm
from octoprov.targets.vmware.vmspec import boot_spec, network_first

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class VsphereBoot(VsphereDriver, BootInterface):
    def prepare_boot(self, ctx: TaskContext) -> str:
        """Creation set the NIC first; this restores it if someone changed it."""
        with self._session(ctx) as si:
            vm = required_vm(si.RetrieveContent(), ctx)
            if network_first(vm):
                return "Network boot first"
            reconfigure(vm, boot_spec(vm, network_first=True), ctx)
            return "Boot order set: network first"

    def boot_from_disk(self, ctx: TaskContext) -> str:
        with self._session(ctx) as si:
            vm = required_vm(si.RetrieveContent(), ctx)
            if not network_first(vm) and vm.config.bootOptions.bootOrder:
                return "Disk first already"
            reconfigure(vm, boot_spec(vm, network_first=False), ctx)
            return "Boot order set: disk first"

    def enable_secure_boot(self, ctx: TaskContext) -> str:
        """Once the installer has powered the VM off: Secure Boot on, the OS disk first, then started. A VM
        already running with Secure Boot on means a repeated step: nothing is done."""
        with self._session(ctx) as si:
            vm = required_vm(si.RetrieveContent(), ctx)
            if is_on(vm) and vm.config.bootOptions.efiSecureBootEnabled:
                return "Secure Boot on already; the VM is running"
            wait_until_off(ctx, lambda: not is_on(vm), poll_s=1)
            reconfigure(vm, boot_spec(vm, network_first=False, secure_boot=True), ctx)
            wait_for(vm.PowerOnVM_Task(), ctx.check_cancelled)
            return "Secure Boot on, disk first; VM started"

    def cleanup_boot(self, ctx: TaskContext) -> str:
        return "Nothing to remove: the boot order goes with the machine"
