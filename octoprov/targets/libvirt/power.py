"""Starting and stopping a task's domain."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from octoprov.targets.base import PowerInterface
from octoprov.targets.libvirt.domains import LibvirtDriver

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class LibvirtPower(LibvirtDriver, PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            if dom.isActive():
                return "Already running"
            dom.create()
            nic = ET.fromstring(dom.XMLDesc(0)).find("devices/interface")  # noqa: S314 - libvirt's own output
            network_first = nic is not None and nic.find("boot") is not None
            return "Powered on; booting from the network" if network_first else "Powered on; booting from disk"

    def power_off(self, ctx: TaskContext) -> str:
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            if not dom.isActive():
                return "Already off"
            dom.destroy()
            return "Powered off"
