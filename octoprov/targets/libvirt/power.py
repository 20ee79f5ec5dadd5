"""Starting and stopping a task's domain."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from octoprov.targets.base import PowerInterface
from octoprov.targets.libvirt.connection import Domain, load_libvirt
from octoprov.targets.libvirt.domains import LibvirtDriver

if TYPE_CHECKING:
    from octoprov.context import TaskContext


ENTER = 28  # Linux keycode of Enter
PRESSES, PRESS_INTERVAL_S = 5, 1.0


def press_enter(dom: Domain) -> None:
    """Windows media on UEFI asks to "Press any key to boot from CD or DVD" for a few seconds; a VM with
    nobody at its console would fall through to its disk (empty) and the network. Enter, a few times."""
    libvirt = load_libvirt()
    for _ in range(PRESSES):
        dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [ENTER], 1, 0)
        time.sleep(PRESS_INTERVAL_S)


class LibvirtPower(LibvirtDriver, PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            if dom.isActive():
                return "Already running"
            dom.create()
            devices = ET.fromstring(dom.XMLDesc(0)).find("devices")  # noqa: S314 - libvirt's own output
            assert devices is not None
            if devices.find("disk[@device='cdrom']/boot[@order='1']") is not None:
                press_enter(dom)
                return "Powered on; booting the installation DVD"
            nic = devices.find("interface")
            network_first = nic is not None and nic.find("boot") is not None
            return "Powered on; booting from the network" if network_first else "Powered on; booting from disk"

    def power_off(self, ctx: TaskContext) -> str:
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            if not dom.isActive():
                return "Already off"
            dom.destroy()
            return "Powered off"
