"""Bare metal: a machine registered by its MAC, booted from the network.

Without a BMC (Redfish power control comes later) Octoprov cannot switch the machine on:
the power step tells the operator to do it, and the task waits for the machine's first
callback. Nothing is created on the machine, so there is nothing to destroy on rollback
beyond the boot registration, which ends with the task.
"""

from __future__ import annotations

from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    DomainJoinInterface,
    Machine,
    NotAvailable,
    PostInstallInterface,
    PowerInterface,
    Target,
)


class BareMetalCompute(ComputeInterface):
    def validate(self, config: dict, node) -> None:
        """The request model already requires the MAC for bare metal; nothing else to check cheaply."""

    def create_machine(self, ctx) -> Machine:
        return Machine(f"mac-{ctx.mac_address}", ctx.mac_address, f"Machine registered by its MAC {ctx.mac_address}")

    def destroy_machine(self, ctx) -> str:
        return "Nothing to remove on a bare-metal machine"


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


class NoDomainJoin(DomainJoinInterface):
    def provision_offline_join(self, ctx) -> str:
        raise NotAvailable("offline domain join needs a management host, which this version cannot use yet")

    def remove_computer_account(self, ctx) -> str:
        return "no computer account was created"


class NoPostInstall(PostInstallInterface):
    def run_item(self, ctx, item: dict) -> str:
        raise NotAvailable(f"post-install ({item['type']}) on bare metal is not available in this version")


def baremetal_target() -> Target:
    return Target(BareMetalCompute(), ManualPower(), NetworkBoot(), NoDomainJoin(), NoPostInstall())
