"""Target drivers: how Octoprov talks to Hyper-V hosts, libvirt hosts and bare metal.

Each concern is a small interface in ``base``; each backend implements the ones it
supports, and ``inventory_for`` picks the implementation by the node's kind.
"""

from __future__ import annotations

from octoprov.targets.base import InventoryInterface, NotAvailable


def inventory_for(kind: str, endpoint: str, credentials: dict) -> InventoryInterface:
    if kind == "kvm":
        from octoprov.targets.kvm import LibvirtInventory

        return LibvirtInventory(endpoint, credentials)
    raise NotAvailable(f"inventory of {kind} hosts is not available in this version")


__all__ = ["InventoryInterface", "NotAvailable", "inventory_for"]
