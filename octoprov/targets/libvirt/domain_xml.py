"""libvirt domain XML for a machine Octoprov installs, built with ElementTree (never by pasting
strings, so a host name or network name cannot break out of its attribute).

The machine boots from the network first (``<boot order>`` on the NIC before the OS disk) or, for
a cloud image, from its OS disk with the cloud-init seed as a CD-ROM (``with_cloud_image``), and
carries its task id in ``<metadata>``: a redelivered step finds the domain it created before and
adopts it, and a domain of the same name that is not tagged is never touched.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from octoprov.targets.disks import named_disks

if TYPE_CHECKING:
    from octoprov.taskspec import VmSpec

TASK_NS = "https://octoprov.dev/xmlns/task/1"
TASK_PREFIX = "octoprov"

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
OVMF_CODE_SECBOOT = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
OVMF_VARS_MS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"  # Microsoft keys enrolled: Windows boots with secure boot on

GIB = 1024**3
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"  # where libvirt keeps each domain's own log


@dataclass(frozen=True)
class LibvirtVolume:
    """One disk: a volume in a storage pool. ``qcow2`` grows on demand (dynamic), ``raw`` is fully
    allocated (fixed)."""

    name: str
    size_gb: int
    purpose: str = "data"
    format: str = "qcow2"
    backing: str | None = None  # a cloud image's base volume (same pool): this volume is a qcow2 overlay on it

    @property
    def capacity_bytes(self) -> int:
        return self.size_gb * GIB


@dataclass(frozen=True)
class LibvirtDomain:
    """A domain to define: what ``domain_xml`` writes (not the request's AD ``domain`` section)."""

    name: str
    vcpus: int
    memory_mib: int
    pool: str
    network: str
    disks: list[LibvirtVolume] = field(default_factory=list)  # the OS disk first: it gets the boot order
    uuid: str | None = None
    generation: int = 2  # 2: UEFI on q35; 1: BIOS on pc
    secure_boot: bool = False
    network_is_bridge: bool = False
    vlan: int | None = None
    mac_address: str | None = None
    virtio_drivers: bool = True  # False: SATA disks and an e1000e NIC, for Windows installers without VirtIO
    task_id: int | None = None
    boot_from_network: bool = True  # False: a cloud image, which boots from its OS disk
    cdrom_volume: str | None = None  # a read-only CD-ROM (the cloud-init seed), in the same pool
    # ISO mode: the installation ISO (a volume of the pool) first in the boot order, the answer ISO beside it
    install_cdrom: str | None = None
    answer_cdrom: str | None = None
    domain_type: str = "kvm"  # "qemu": emulated (TCG), for hosts without usable hardware virtualisation


def domain_xml(domain: LibvirtDomain) -> str:
    if domain.secure_boot and domain.generation != 2:
        raise ValueError("secure boot needs generation 2 (UEFI)")
    root = ET.Element("domain", type=domain.domain_type)
    ET.SubElement(root, "name").text = domain.name
    if domain.uuid:
        ET.SubElement(root, "uuid").text = domain.uuid
    if domain.task_id is not None:
        metadata = ET.SubElement(root, "metadata")
        # declared on the element itself, as libvirt stores it, so the tag reads the same in virsh dumpxml
        ET.SubElement(metadata, f"{TASK_PREFIX}:task", {f"xmlns:{TASK_PREFIX}": TASK_NS, "id": str(domain.task_id)})
    ET.SubElement(root, "memory", unit="MiB").text = str(domain.memory_mib)
    ET.SubElement(root, "vcpu").text = str(domain.vcpus)
    _os(root, domain)
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if domain.secure_boot:
        ET.SubElement(features, "smm", state="on")  # OVMF's secure-boot build refuses to run without SMM
    ET.SubElement(root, "clock", offset="utc")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    _disks(devices, domain)
    _interface(devices, domain)
    serial = ET.SubElement(devices, "serial", type="pty")
    # what the installer prints stays readable on the host after the VM is gone
    ET.SubElement(serial, "log", file=serial_log_path(domain.name), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    graphics = ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")  # never on the host's public address
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def serial_log_path(name: str) -> str:
    return f"{SERIAL_LOG_DIR}/{name}-serial0.log"


def _os(root: ET.Element, domain: LibvirtDomain) -> None:
    os_el = ET.SubElement(root, "os")
    machine = "q35" if domain.generation == 2 else "pc"
    ET.SubElement(os_el, "type", arch="x86_64", machine=machine).text = "hvm"
    if domain.generation != 2:
        return
    # explicit OVMF files rather than firmware auto-selection: the same firmware on every libvirt version
    code, variables = (OVMF_CODE_SECBOOT, OVMF_VARS_MS) if domain.secure_boot else (OVMF_CODE, OVMF_VARS)
    ET.SubElement(os_el, "loader", readonly="yes", secure="yes" if domain.secure_boot else "no",
                  type="pflash").text = code
    ET.SubElement(os_el, "nvram", template=variables)


def _disks(devices: ET.Element, domain: LibvirtDomain) -> None:
    bus, prefix = ("virtio", "vd") if domain.virtio_drivers else ("sata", "sd")
    for index, volume in enumerate(domain.disks):
        disk = ET.SubElement(devices, "disk", type="volume", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=volume.format)  # volumes are never probed for a format
        ET.SubElement(disk, "source", pool=domain.pool, volume=volume.name)
        ET.SubElement(disk, "target", dev=prefix + _drive_letters(index), bus=bus)
        if index == 0:
            first = domain.boot_from_network or domain.install_cdrom is not None
            ET.SubElement(disk, "boot", order="2" if first else "1")
    # SATA works with every guest and firmware; behind VirtIO disks the first CD-ROM is the first SATA drive
    index = len(domain.disks) if bus == "sata" else 0
    for iso in (domain.install_cdrom, domain.answer_cdrom, domain.cdrom_volume):
        if iso is None:
            continue
        cdrom = ET.SubElement(devices, "disk", type="volume", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        ET.SubElement(cdrom, "source", pool=domain.pool, volume=iso)
        ET.SubElement(cdrom, "target", dev="sd" + _drive_letters(index), bus="sata")
        ET.SubElement(cdrom, "readonly")
        if iso == domain.install_cdrom:
            ET.SubElement(cdrom, "boot", order="1")
        index += 1


def _interface(devices: ET.Element, domain: LibvirtDomain) -> None:
    kind = "bridge" if domain.network_is_bridge else "network"
    nic = ET.SubElement(devices, "interface", type=kind)
    if domain.mac_address:
        ET.SubElement(nic, "mac", address=domain.mac_address.lower())
    ET.SubElement(nic, "source", {kind: domain.network})
    if domain.vlan is not None:
        vlan = ET.SubElement(nic, "vlan")
        ET.SubElement(vlan, "tag", id=str(domain.vlan))
    ET.SubElement(nic, "model", type="virtio" if domain.virtio_drivers else "e1000e")
    if domain.boot_from_network:
        ET.SubElement(nic, "boot", order="1")


def _drive_letters(index: int) -> str:
    """0 → a, 25 → z, 26 → aa, as the kernel names its disks."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def task_id_of(xml: str) -> int | None:
    """The task id a domain is tagged with, or None when Octoprov did not create it."""
    tag = ET.fromstring(xml).find(f"metadata/{{{TASK_NS}}}task")  # noqa: S314 - libvirt's own output
    try:
        return int(tag.get("id", "")) if tag is not None else None
    except ValueError:
        return None


def volume_names(xml: str, prefix: str) -> list[tuple[str, str]]:
    """The (pool, volume) pairs of a domain's disks whose volume name starts with ``prefix``."""
    found = []
    for source in ET.fromstring(xml).iterfind("devices/disk[@type='volume']/source"):  # noqa: S314
        pool, volume = source.get("pool"), source.get("volume")
        if pool and volume and volume.startswith(prefix):
            found.append((pool, volume))
    return found


def mac_of(xml: str) -> str | None:
    mac = ET.fromstring(xml).find("devices/interface/mac")  # noqa: S314
    return mac.get("address") if mac is not None else None


def domain_for(vm: VmSpec, *, name: str, task_id: int | None, mac_address: str | None, pool: str, network: str,
               network_is_bridge: bool, virtio_drivers: bool = True, domain_type: str = "kvm") -> LibvirtDomain:
    """The domain a task's ``vm`` section asks for, in ``pool`` and on ``network`` of its host."""
    volumes = [LibvirtVolume(volume_name, disk.size_gb, disk.purpose, "raw" if disk.type == "fixed" else "qcow2")
               for volume_name, disk in named_disks(name, vm.disks)]
    return LibvirtDomain(
        name=name, vcpus=vm.cpu, memory_mib=vm.memory_gb * 1024, pool=pool, network=network, disks=volumes,
        generation=vm.generation, secure_boot=bool(vm.secureboot),  # VmSpec decided it: never None once validated
        network_is_bridge=network_is_bridge, vlan=vm.network.vlan, mac_address=mac_address,
        virtio_drivers=virtio_drivers, task_id=task_id, domain_type=domain_type,
    )


def with_cloud_image(domain: LibvirtDomain, base_volume: str) -> LibvirtDomain:
    """The domain for a cloud image: its OS disk (the first) a copy-on-write overlay on the image's
    base volume, the seed ``<name>-cidata`` attached as a CD-ROM, booting from disk only."""
    if not domain.disks or domain.disks[0].purpose != "os":
        raise ValueError("a cloud image needs an OS disk")
    os_disk = dataclasses.replace(domain.disks[0], format="qcow2", backing=base_volume)
    return dataclasses.replace(domain, disks=[os_disk, *domain.disks[1:]], boot_from_network=False,
                               cdrom_volume=seed_volume_name(domain.name))


def with_install_media(domain: LibvirtDomain, install_iso: str) -> LibvirtDomain:
    """ISO mode: the installation ISO first in the boot order, the answer ISO ``<name>-answers`` beside it (named
    like the machine's disks, so the rollback removes it; the installation ISO is the pool's and stays), no
    network boot."""
    return dataclasses.replace(domain, boot_from_network=False, install_cdrom=install_iso,
                               answer_cdrom=answer_volume_name(domain.name))


def answer_volume_name(domain_name: str) -> str:
    return f"{domain_name}-answers"


def seed_volume_name(domain_name: str) -> str:
    """Named like the machine's disks, so the rollback that removes them removes it too."""
    return f"{domain_name}-cidata"
