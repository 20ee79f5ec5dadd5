"""A task's domain boots from the network: its NIC first in the boot order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from octoprov.errors import PermanentError
from octoprov.targets.base import BootInterface
from octoprov.targets.libvirt.connection import load_libvirt
from octoprov.targets.libvirt.domains import LibvirtDriver

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class LibvirtBoot(LibvirtDriver, BootInterface):
    def prepare_boot(self, ctx: TaskContext) -> str:
        """The PXE services find the task by its MAC; all the domain needs is its NIC first in the
        boot order (``domain_xml`` sets it; this restores it if someone changed it)."""
        libvirt = load_libvirt()
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
            nic = root.find("devices/interface")
            devices = root.find("devices")
            if nic is None or devices is None:
                raise PermanentError(f"{ctx.hostname} has no network interface to boot from")
            if nic.find("boot[@order='1']") is not None:
                return "Network boot first"
            os_element = root.find("os")
            if os_element is not None:
                for os_boot in os_element.findall("boot"):  # per-device order and <os><boot> cannot be mixed
                    os_element.remove(os_boot)
            order = 2
            for device in devices:
                boot = device.find("boot")
                if device is nic:
                    continue
                if boot is not None:
                    boot.set("order", str(order))
                    order += 1
            boot = nic.find("boot")
            if boot is None:
                boot = ET.SubElement(nic, "boot")
            boot.set("order", "1")
            conn.defineXML(ET.tostring(root, encoding="unicode"))
            return "Boot order set: network first"

    def cleanup_boot(self, ctx: TaskContext) -> str:
        return "Nothing to remove: the boot order goes with the machine"
