"""Target drivers: how Octoprov talks to Hyper-V hosts, libvirt hosts and bare metal.

Each concern is a small interface in ``base``; each backend implements the ones it
supports; ``registry`` declares the target types and builds their drivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.errors import NotAvailable
from octoprov.targets import registry
from octoprov.targets.base import InventoryInterface, Target

if TYPE_CHECKING:
    from octoprov.context import NodeInfo


def inventory_for(node: NodeInfo) -> InventoryInterface:
    """What the hypervisor node offers, read by the target type its kind serves."""
    target = registry.inventory_target(node.kind)
    if target is None or target.inventory is None:
        raise NotAvailable(f"inventory of {node.kind} hosts is not available in this version")
    return target.inventory(node)


__all__ = ["InventoryInterface", "NotAvailable", "Target", "inventory_for"]
