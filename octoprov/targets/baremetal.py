"""Bare metal: a machine known by its MAC, booted from the network.

With a BMC (a machine registered under /machines with Redfish settings) Octoprov powers the
machine on into a one-time network boot, and off again on rollback. Without one it cannot:
the power step tells the operator to switch it on, and the task waits for the machine's first
callback. Nothing is created on the machine, so rollback has nothing to delete; it powers a
machine with a BMC off, so a cancelled install does not run on.
"""

from __future__ import annotations

from octoprov.postinstall import MachinePostInstall
from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    Machine,
    PowerInterface,
    Target,
)
from octoprov.targets.redfish import RedfishPower


class BareMetalCompute(ComputeInterface):
    def validate(self, config: dict, node) -> None:
        """The request model already requires the MAC for bare metal; nothing else to check cheaply."""

    def create_machine(self, ctx) -> Machine:
        return Machine(f"mac-{ctx.mac_address}", ctx.mac_address, f"Machine registered by its MAC {ctx.mac_address}")

    def destroy_machine(self, ctx) -> str:
        if _has_bmc(ctx):
            return RedfishPower().power_off(ctx)
        return "Nothing to remove on a bare-metal machine"


def _has_bmc(ctx) -> bool:
    return ctx.node is not None and ctx.node.kind == "redfish"


class BareMetalPower(PowerInterface):
    """Through the BMC when the machine has one, else by hand."""

    def power_on(self, ctx) -> str:
        return (RedfishPower() if _has_bmc(ctx) else ManualPower()).power_on(ctx)

    def power_off(self, ctx) -> str:
        return (RedfishPower() if _has_bmc(ctx) else ManualPower()).power_off(ctx)


class ManualPower(PowerInterface):
    def power_on(self, ctx) -> str:
        return "No BMC configured: power on the machine now (it boots from the network)"

    def power_off(self, ctx) -> str:
        return "No BMC configured: power the machine off by hand if needed"


class NetworkBoot(BootInterface):
    def prepare_boot(self, ctx) -> str:
        return "Boot config ready"  # the PXE services find the task by its MAC while it installs

    def cleanup_boot(self, ctx) -> str:
        return "Boot config removed with the task"


def baremetal_target() -> Target:
    from octoprov.targets.hyperv.domainjoin import DjoinDomainJoin  # AD, whatever the machine runs on

    return Target(BareMetalCompute(), BareMetalPower(), NetworkBoot(), DjoinDomainJoin(), MachinePostInstall())
