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

from octoprov.targets.disks import named_disks

TASK_NS = "https://octoprov.dev/xmlns/task/1"
TASK_PREFIX = "octoprov"

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
OVMF_CODE_SECBOOT = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
OVMF_VARS_MS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"  # Microsoft keys enrolled: Windows boots with secure boot on

GIB = 1024**3
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"  # where libvirt keeps each domain's own log


@dataclass(frozen=True)
class VolumeSpec:
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
class DomainSpec:
    name: str
    vcpus: int
    memory_mib: int
    pool: str
    network: str
    disks: list[VolumeSpec] = field(default_factory=list)  # the OS disk first: it gets the boot order
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
    domain_type: str = "kvm"  # "qemu": emulated (TCG), for hosts without usable hardware virtualisation


def domain_xml(spec: DomainSpec) -> str:
    if spec.secure_boot and spec.generation != 2:
        raise ValueError("secure boot needs generation 2 (UEFI)")
    root = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(root, "name").text = spec.name
    if spec.uuid:
        ET.SubElement(root, "uuid").text = spec.uuid
    if spec.task_id is not None:
        metadata = ET.SubElement(root, "metadata")
        # declared on the element itself, as libvirt stores it, so the tag reads the same in virsh dumpxml
        ET.SubElement(metadata, f"{TASK_PREFIX}:task", {f"xmlns:{TASK_PREFIX}": TASK_NS, "id": str(spec.task_id)})
    ET.SubElement(root, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(root, "vcpu").text = str(spec.vcpus)
    _os(root, spec)
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if spec.secure_boot:
        ET.SubElement(features, "smm", state="on")  # OVMF's secure-boot build refuses to run without SMM
    ET.SubElement(root, "clock", offset="utc")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    _disks(devices, spec)
    _interface(devices, spec)
    serial = ET.SubElement(devices, "serial", type="pty")
    # what the installer prints stays readable on the host after the VM is gone
    ET.SubElement(serial, "log", file=serial_log_path(spec.name), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    graphics = ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")  # never on the host's public address
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def serial_log_path(name: str) -> str:
    return f"{SERIAL_LOG_DIR}/{name}-serial0.log"


def _os(root: ET.Element, spec: DomainSpec) -> None:
    os_el = ET.SubElement(root, "os")
    machine = "q35" if spec.generation == 2 else "pc"
    ET.SubElement(os_el, "type", arch="x86_64", machine=machine).text = "hvm"
    if spec.generation != 2:
        return
    # explicit OVMF files rather than firmware auto-selection: the same firmware on every libvirt version
    code, variables = (OVMF_CODE_SECBOOT, OVMF_VARS_MS) if spec.secure_boot else (OVMF_CODE, OVMF_VARS)
    ET.SubElement(os_el, "loader", readonly="yes", secure="yes" if spec.secure_boot else "no",
                  type="pflash").text = code
    ET.SubElement(os_el, "nvram", template=variables)


def _disks(devices: ET.Element, spec: DomainSpec) -> None:
    bus, prefix = ("virtio", "vd") if spec.virtio_drivers else ("sata", "sd")
    for index, volume in enumerate(spec.disks):
        disk = ET.SubElement(devices, "disk", type="volume", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=volume.format)  # volumes are never probed for a format
        ET.SubElement(disk, "source", pool=spec.pool, volume=volume.name)
        ET.SubElement(disk, "target", dev=prefix + _drive_letters(index), bus=bus)
        if index == 0:
            ET.SubElement(disk, "boot", order="2" if spec.boot_from_network else "1")
    if spec.cdrom_volume:
        # SATA works with every guest and firmware; behind VirtIO disks it is the first SATA drive
        index = len(spec.disks) if bus == "sata" else 0
        cdrom = ET.SubElement(devices, "disk", type="volume", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        ET.SubElement(cdrom, "source", pool=spec.pool, volume=spec.cdrom_volume)
        ET.SubElement(cdrom, "target", dev="sd" + _drive_letters(index), bus="sata")
        ET.SubElement(cdrom, "readonly")


def _interface(devices: ET.Element, spec: DomainSpec) -> None:
    kind = "bridge" if spec.network_is_bridge else "network"
    nic = ET.SubElement(devices, "interface", type=kind)
    if spec.mac_address:
        ET.SubElement(nic, "mac", address=spec.mac_address.lower())
    ET.SubElement(nic, "source", {kind: spec.network})
    if spec.vlan is not None:
        vlan = ET.SubElement(nic, "vlan")
        ET.SubElement(vlan, "tag", id=str(spec.vlan))
    ET.SubElement(nic, "model", type="virtio" if spec.virtio_drivers else "e1000e")
    if spec.boot_from_network:
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
        return int(tag.get("id")) if tag is not None else None
    except (TypeError, ValueError):
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


def domain_spec_from(ctx, pool: str, network: str, network_is_bridge: bool, *,
                     virtio_drivers: bool = True, domain_type: str = "kvm") -> DomainSpec:
    """The domain a task asks for (``ctx.config`` is the camelCase request)."""
    vm = ctx.config.get("vm") or {}
    generation = int(vm.get("generation", 2))
    secure_boot = vm.get("secureboot")
    if secure_boot is None:  # as the request model decides: on for UEFI, off for BIOS
        secure_boot = generation == 2
    volumes = [VolumeSpec(name, int(disk["sizeGb"]), disk.get("purpose", "data"),
                          "raw" if disk.get("type") == "fixed" else "qcow2")
               for name, disk in named_disks(ctx.hostname, vm.get("disks") or [])]
    return DomainSpec(
        name=ctx.hostname, vcpus=int(vm.get("cpu", 4)), memory_mib=int(vm.get("memoryGb", 16)) * 1024,
        pool=pool, network=network, disks=volumes, generation=generation, secure_boot=bool(secure_boot),
        network_is_bridge=network_is_bridge, vlan=(vm.get("network") or {}).get("vlan"),
        mac_address=ctx.mac_address, virtio_drivers=virtio_drivers, task_id=ctx.task_id, domain_type=domain_type,
    )


def with_cloud_image(spec: DomainSpec, base_volume: str) -> DomainSpec:
    """The domain for a cloud image: its OS disk (the first) a copy-on-write overlay on the image's
    base volume, the seed ``<name>-cidata`` attached as a CD-ROM, booting from disk only."""
    if not spec.disks or spec.disks[0].purpose != "os":
        raise ValueError("a cloud image needs an OS disk")
    os_disk = dataclasses.replace(spec.disks[0], format="qcow2", backing=base_volume)
    return dataclasses.replace(spec, disks=[os_disk, *spec.disks[1:]], boot_from_network=False,
                               cdrom_volume=seed_volume_name(spec.name))


def seed_volume_name(domain_name: str) -> str:
    """Named like the machine's disks, so the rollback that removes them removes it too."""
    return f"{domain_name}-cidata"
