"""Target drivers: how Octoprov talks to Hyper-V hosts, libvirt hosts and bare metal.

Each concern is a small interface in ``base``; each backend implements the ones it
supports, and the functions here pick the implementation by target type and node kind.
"""

from __future__ import annotations

from octoprov.errors import NotAvailable
from octoprov.targets.base import InventoryInterface, Target


def target_for(target_type: str) -> Target:
    if target_type == "fake":
        from octoprov.targets.fake import fake_target

        return fake_target()
    if target_type == "kvm":
        from octoprov.targets.kvm import kvm_target

        return kvm_target()
    if target_type == "baremetal":
        from octoprov.targets.baremetal import baremetal_target

        return baremetal_target()
    if target_type == "hyperv":
        from octoprov.targets.hyperv import hyperv_target

        return hyperv_target()
    raise NotAvailable(f"the {target_type} target driver is not available in this version")


def inventory_for(kind: str, endpoint: str, credentials: dict, options: dict | None = None, *,
                  username: str | None = None, name: str | None = None) -> InventoryInterface:
    if kind == "hyperv":
        from octoprov.targets.hyperv.connection import endpoint as winrm_endpoint
        from octoprov.targets.hyperv.inventory import HyperVInventory

        label = name or endpoint
        return HyperVInventory(winrm_endpoint(endpoint, (options or {}).get("winrm"), username,
                                              credentials.get("password"), label, f"node {label}"))
    if kind == "kvm":
        from octoprov.targets.kvm import LibvirtInventory

        return LibvirtInventory(endpoint, credentials, options)
    if kind == "fake":
        from octoprov.targets.fake import FakeInventory

        return FakeInventory()
    raise NotAvailable(f"inventory of {kind} hosts is not available in this version")


__all__ = ["InventoryInterface", "NotAvailable", "Target", "inventory_for", "target_for"]
