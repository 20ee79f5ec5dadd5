"""Bare metal: a machine known by its MAC, booted from the network.

With a BMC (a machine registered under /machines with Redfish or IPMI settings: its kind) Octoprov
powers the machine on into a one-time network boot, and off again on rollback; once the OS is installed
it sets a persistent boot override to the hard disk. Without one it cannot:
the power step tells the operator to switch it on, and the task waits for the machine's first
callback. Nothing is created on the machine, so rollback has nothing to delete; it powers a
machine with a BMC off, so a cancelled install does not run on.

A machine registered with ``secureBoot`` whose installer is unsigned (WinPE through wimboot, an image
with ``signedKernel: false``) installs with Secure Boot off: through the BMC, power-on turns it off,
the ``enable_secure_boot`` step turns it on again once the installer has powered the machine off, and a
rollback restores it. A machine without a BMC is accepted all the same: its power-on already needs
someone at the machine, and the steps tell that person to switch Secure Boot off in the firmware setup
before powering on and on again before the installed OS first boots. IPMI cannot switch Secure Boot, and
a task powered on through it would start with Secure Boot enforced and nobody told: such a task is refused
when it is submitted (``machines.check_secure_boot_control``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.errors import PermanentError
from octoprov.machines import BMC_KINDS
from octoprov.postinstall import MachinePostInstall
from octoprov.targets import ipmi, redfish, virtualmedia
from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    Machine,
    PowerInterface,
    Target,
)
from octoprov.targets.ipmi import IpmiPower
from octoprov.targets.redfish import RedfishPower

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec


class BareMetalCompute(ComputeInterface):
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        """The request model already requires the MAC for bare metal; nothing else to check cheaply."""

    def create_machine(self, ctx: TaskContext) -> Machine:
        mac = ctx.mac_address
        if mac is None:  # the request model requires it; a task without one has nothing to boot
            raise PermanentError("a bare-metal task needs the machine's MAC address")
        return Machine(f"mac-{mac}", mac, f"Machine registered by its MAC {mac}")

    def destroy_machine(self, ctx: TaskContext) -> str:
        if _kind(ctx) in BMC_KINDS:
            return _power(ctx).power_off(ctx)
        return "Nothing to remove on a bare-metal machine"


def _kind(ctx: TaskContext) -> str:
    """The machine's kind: its BMC's protocol, or "manual" (also for a task whose machine is not registered)."""
    return ctx.node.kind if ctx.node is not None else "manual"


def _power(ctx: TaskContext) -> PowerInterface:
    """The power driver of the machine's BMC, or the operator's hands without one."""
    kind = _kind(ctx)
    if kind == "redfish":
        return RedfishPower()
    if kind == "ipmi":
        return IpmiPower()
    return ManualPower()


class BareMetalPower(PowerInterface):
    """Through the BMC when the machine has one, else by hand."""

    def power_on(self, ctx: TaskContext) -> str:
        if virtualmedia.uses_virtual_media(ctx):
            if _kind(ctx) != "redfish":  # refused when the task was created; the machine may have changed since
                raise PermanentError("virtual media needs the machine's Redfish BMC, and it has none")
            return RedfishPower(virtualmedia.mint_urls(ctx)).power_on(ctx)
        return _power(ctx).power_on(ctx)

    def power_off(self, ctx: TaskContext) -> str:
        return _power(ctx).power_off(ctx)


class ManualPower(PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        if ctx.secure_boot_after_install:
            return ("No BMC configured: turn Secure Boot off in the machine's firmware setup (the installer is "
                    "unsigned; a later step asks for it on again), then power on the machine now (it boots from "
                    "the network)")
        return "No BMC configured: power on the machine now (it boots from the network)"

    def power_off(self, ctx: TaskContext) -> str:
        return "No BMC configured: power the machine off by hand if needed"


class NetworkBoot(BootInterface):
    """The network boot, or the BMC's virtual CD for a task that boots by virtual media
    (octoprov/targets/virtualmedia.py)."""

    def prepare_boot(self, ctx: TaskContext) -> str:
        if virtualmedia.uses_virtual_media(ctx):
            return virtualmedia.build_media(ctx)
        return "Boot config ready"  # the PXE services find the task by its MAC while it installs

    def cleanup_boot(self, ctx: TaskContext) -> str:
        """Rollback: the boot config goes with the task (a boot ISO is ejected and deleted); a machine whose
        installer had Secure Boot turned off gets it back, as it is registered."""
        removed = _eject(ctx) if virtualmedia.uses_virtual_media(ctx) else "Boot config removed with the task"
        kind = _kind(ctx)
        if not ctx.secure_boot_after_install or kind == "ipmi":  # IPMI never turned it off (power_on refuses)
            return removed
        if kind == "redfish":
            return f"{removed}; {redfish.restore_secure_boot(ctx)}"
        return f"{removed}; no BMC configured: turn Secure Boot on again in the machine's firmware setup"

    def boot_from_disk(self, ctx: TaskContext) -> str:
        kind = _kind(ctx)
        if virtualmedia.uses_virtual_media(ctx):  # the installed OS booted: the ISO's work is done
            return f"{_eject(ctx)}; {redfish.boot_from_disk(ctx)}"
        if kind == "redfish":
            return redfish.boot_from_disk(ctx)
        if kind == "ipmi":
            return ipmi.boot_from_disk(ctx)
        return "No BMC configured: set the machine's firmware to boot from its disk, or every reboot waits for " \
               "the network boot to time out"

    def enable_secure_boot(self, ctx: TaskContext) -> str:
        kind = _kind(ctx)
        if kind == "redfish":
            return redfish.enable_secure_boot(ctx)
        if kind == "ipmi":  # not planned for such a machine: the task is refused when submitted
            raise PermanentError("Secure Boot cannot be turned on through an IPMI BMC; turn it on in the "
                                 "machine's firmware setup")
        return ("No BMC configured: once the installer has powered the machine off, turn Secure Boot on in its "
                "firmware setup, set it to boot from its disk, then power it on")


def _eject(ctx: TaskContext) -> str:
    """The task's media out of the BMC's virtual drives, its own files deleted, their URLs dead."""
    done = redfish.eject(ctx) if _kind(ctx) == "redfish" else "No Redfish BMC to eject the boot media from"
    virtualmedia.forget(ctx)
    return f"{done}; the task's media deleted"


def baremetal_target() -> Target:
    from octoprov.domainjoin import domain_join_backend  # AD, whatever the machine runs on

    return Target(BareMetalCompute(), BareMetalPower(), NetworkBoot(), domain_join_backend(),
                  MachinePostInstall())
