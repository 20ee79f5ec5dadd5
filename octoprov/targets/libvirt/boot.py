"""A task's domain boots from the network while it installs (its NIC first in the boot order) and from
its OS disk once the OS is installed (the disk first, the NIC after it)."""

from __future__ import annotations

import importlib
import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from octoprov.answerfiles.dvd import answer_iso, dvd_answer_file
from octoprov.errors import PermanentError
from octoprov.secureboot import wait_until_off
from octoprov.targets.base import BootInterface
from octoprov.targets.libvirt.cloudimage import put_seed
from octoprov.targets.libvirt.connection import Domain, load_libvirt
from octoprov.targets.libvirt.domain_xml import OVMF_CODE_SECBOOT, OVMF_VARS_MS, answer_volume_name
from octoprov.targets.libvirt.domains import LibvirtDriver

if TYPE_CHECKING:
    from octoprov.context import TaskContext

RUNNING_KEEPS_ORDER = "the running domain keeps its boot order until it is powered off and started again"


def boot_first(root: ET.Element, first: ET.Element) -> bool:
    """Give ``first`` (a device of ``root``'s ``<devices>``) boot order 1 and the other bootable devices
    2, 3, … in their order; False when it is first already. Per-device orders and ``<os><boot>`` cannot
    be mixed, so the latter goes."""
    if first.find("boot[@order='1']") is not None:
        return False
    os_element = root.find("os")
    if os_element is not None:
        for os_boot in os_element.findall("boot"):
            os_element.remove(os_boot)
    order = 2
    for device in root.iterfind("devices/*"):
        boot = device.find("boot")
        if device is not first and boot is not None:
            boot.set("order", str(order))
            order += 1
    boot = first.find("boot")
    if boot is None:
        boot = ET.SubElement(first, "boot")
    boot.set("order", "1")
    return True


class LibvirtBoot(LibvirtDriver, BootInterface):
    def prepare_boot(self, ctx: TaskContext) -> str:
        """The PXE services find the task by its MAC; all the domain needs is its NIC first in the
        boot order (``domain_xml`` sets it; this restores it if someone changed it). In ISO mode the
        answer ISO (the task's Autounattend.xml, adapted to the DVD) goes into its volume, and the
        installation ISO is first."""
        libvirt = load_libvirt()
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
            answers = root.find(f"devices/disk[@device='cdrom']/source[@volume='{answer_volume_name(ctx.hostname)}']")
            if answers is not None:
                pool = conn.storagePoolLookupByName(answers.get("pool") or "")
                put_seed(conn, pool, answer_volume_name(ctx.hostname), answer_iso(dvd_answer_file(ctx)))
                media = root.find("devices/disk[@device='cdrom']")  # the installation ISO comes first
                assert media is not None  # the answer ISO's own element at least
                if boot_first(root, media):
                    conn.defineXML(ET.tostring(root, encoding="unicode"))
                return f"Answer ISO {answer_volume_name(ctx.hostname)} written beside the installation ISO; DVD first"
            nic = root.find("devices/interface")
            if nic is None:
                raise PermanentError(f"{ctx.hostname} has no network interface to boot from")
            if not boot_first(root, nic):
                return "Network boot first"
            conn.defineXML(ET.tostring(root, encoding="unicode"))
            return "Boot order set: network first"

    def boot_from_disk(self, ctx: TaskContext) -> str:
        """The definition gets the OS disk first, which a power cycle uses; the NIC stays after it, so a
        disk that does not boot still reaches the PXE services. A running domain keeps its QEMU through a
        reboot (QEMU resets the machine, it is not started again from the definition), and libvirt 9.0
        refuses to change a device's boot order live ("cannot modify network device boot index
        setting"), so the running QEMU gets the same order through its monitor: the firmware reads it
        again at every reset. Each part is checked before it is set, so a repeated step changes nothing."""
        libvirt = load_libvirt()
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
            disk = root.find("devices/disk[@device='disk']")
            if disk is None:
                raise PermanentError(f"{ctx.hostname} has no disk to boot from")
            defined = boot_first(root, disk)
            if defined:
                conn.defineXML(ET.tostring(root, encoding="unicode"))
            detail = "Boot order set: disk first" if defined else "Disk first already"
            if not dom.isActive():
                return detail
            return f"{detail}; {_running_disk_first(dom)}"

    def enable_secure_boot(self, ctx: TaskContext) -> str:
        """Once the installer has powered the domain off: the secure-boot OVMF build with SMM, the
        variable store made afresh from Microsoft's keys (``VIR_DOMAIN_START_RESET_NVRAM``: the one the
        installer ran with has none), the OS disk first (the installer's network boot is over, and an
        unsigned iPXE would only be refused), then started. A domain still running after
        ``POWER_OFF_WAIT_S`` is a transient failure, retried; a running domain already defined with
        Secure Boot means a repeated step, and nothing is done."""
        libvirt = load_libvirt()
        with self._connection(ctx) as conn:
            dom = self._existing_domain(conn, ctx)
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
            if secure_boot_enforced(root) and dom.isActive():
                return "Secure Boot on already; the VM is running"
            wait_until_off(ctx, lambda: not dom.isActive(), poll_s=1)
            with_secure_boot(root)
            disk = root.find("devices/disk[@device='disk']")
            if disk is not None:
                boot_first(root, disk)
            dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_RESET_NVRAM)
            return "Secure Boot on (OVMF with Microsoft's keys, variables made afresh), disk first; VM started"

    def cleanup_boot(self, ctx: TaskContext) -> str:
        return "Nothing to remove: the boot order goes with the machine"


def secure_boot_enforced(root: ET.Element) -> bool:
    loader = root.find("os/loader")
    return loader is not None and loader.get("secure") == "yes"


def with_secure_boot(root: ET.Element) -> None:
    """A UEFI domain definition changed to the secure-boot OVMF build, Microsoft's variable template and SMM."""
    os_element = root.find("os")
    loader = os_element.find("loader") if os_element is not None else None
    if os_element is None or loader is None:
        raise PermanentError("Secure Boot needs a UEFI domain (generation 2)")
    loader.set("secure", "yes")
    loader.text = OVMF_CODE_SECBOOT
    nvram = os_element.find("nvram")
    if nvram is None:
        nvram = ET.SubElement(os_element, "nvram")
    nvram.set("template", OVMF_VARS_MS)
    features = root.find("features")
    if features is None:
        features = ET.SubElement(root, "features")
    smm = features.find("smm")
    if smm is None:
        smm = ET.SubElement(features, "smm")
    smm.set("state", "on")


def _running_disk_first(dom: Domain) -> str:
    """The OS disk's ``bootindex`` 1 and the NIC's 2 in the running QEMU (its devices are
    ``/machine/peripheral/<libvirt alias>``); what was done, or why not. Only what differs is set (QEMU
    refuses an index already taken, the device's own too), and the NIC gives up its index first, so at no
    point is the network ahead of the disk and a step interrupted half-way is finished by its retry."""
    libvirt = load_libvirt()
    live = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's own output
    disk, nic = (_peripheral(live, path) for path in ("devices/disk[@device='disk']", "devices/interface"))
    if disk is None or nic is None:  # not a QEMU domain (libvirt names every device it gives QEMU)
        return f"{RUNNING_KEEPS_ORDER} (its devices have no QEMU ids)"
    try:
        disk_index = _qmp(dom, "qom-get", path=disk, property="bootindex")
        nic_index = _qmp(dom, "qom-get", path=nic, property="bootindex")
        if (disk_index, nic_index) == (1, 2):
            return "already so in the running domain"
        if nic_index not in (-1, 2):
            _qmp(dom, "qom-set", path=nic, property="bootindex", value=-1)
            nic_index = -1
        if disk_index != 1:
            _qmp(dom, "qom-set", path=disk, property="bootindex", value=1)
        if nic_index != 2:
            _qmp(dom, "qom-set", path=nic, property="bootindex", value=2)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:  # a host driver without a QEMU monitor
            raise
        return f"{RUNNING_KEEPS_ORDER} ({exc.get_error_message()})"
    return "set in the running domain too, for its next reboot"


def _peripheral(live: ET.Element, path: str) -> str | None:
    alias = live.find(f"{path}/alias")
    name = alias.get("name") if alias is not None else None
    return f"/machine/peripheral/{name}" if name else None


def _qmp(dom: Domain, command: str, **arguments: Any) -> Any:
    """One QMP command through libvirt (``virsh qemu-monitor-command``); QEMU's refusal is permanent."""
    libvirt_qemu = importlib.import_module("libvirt_qemu")  # ships with libvirt-python, untyped like it
    reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps({"execute": command,
                                                                        "arguments": arguments}), 0))
    if "error" in reply:
        raise PermanentError(f"QEMU refused {command} {arguments}: {reply['error'].get('desc')}")
    return reply.get("return")
