"""The PowerShell the Hyper-V target runs, as data: which commands, in which order, with which
bound parameters. Pure functions of a :class:`VmPlan`, so every option is testable as a table and
the dry run lists exactly what a task would run.

No value is ever written into script text: a command is a cmdlet name and its parameters, which
pypsrp sends to the host as typed PSRP parameters. Where PowerShell needs an object rather than a
value (Set-VMFirmware's boot device) or has to shape its output as JSON, the command is one of the
fixed scripts in ``scripts/`` (``SCRIPTS``), whose ``param()`` block receives the values as bound
parameters in the same way.
"""

from __future__ import annotations

import hashlib
import ntpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov.targets.disks import named_disks
from octoprov.targets.tags import CREATING, task_tag
from octoprov.winrm.commands import Cmdlet, Pipeline, cmdlet, fixed, pipeline
from octoprov.winrm.scriptfiles import scripts

if TYPE_CHECKING:
    from octoprov.taskspec import DiskSpec

PACKAGE = "octoprov.targets.hyperv"
SCRIPTS = scripts(PACKAGE)  # the fixed scripts of scripts/, by name

GIB = 1024**3
SECURE_BOOT_TEMPLATE = "MicrosoftUEFICertificateAuthority"
ANSWER_ISO_SUFFIX = "-answer.iso"
CHUNK_BYTES = 256 * 1024  # answer ISO upload: well below the 500 KiB WSMan envelope of current hosts
BIOS_ORDER = {"pxe": ("LegacyNetworkAdapter", "IDE", "CD", "Floppy"),
              "iso": ("CD", "IDE", "LegacyNetworkAdapter", "Floppy")}
LEGACY_ADAPTER = "Legacy Network Adapter"
DEFAULT_ADAPTER = "Network Adapter"  # the synthetic adapter New-VM adds


# --- the plan of one machine ----------------------------------------------------------------------


@dataclass(frozen=True)
class DiskPlan:
    path: str
    size_bytes: int
    fixed: bool


@dataclass(frozen=True)
class VmPlan:
    """Everything the commands need, decided before the first one runs."""

    name: str
    task_id: int
    generation: int
    cpu: int
    memory_bytes: int
    vm_path: str | None  # None: the host's default VirtualMachinePath
    disks: tuple[DiskPlan, ...]
    switch: str
    vlan: int | None
    mac: str  # canonical, 00:15:5d:01:02:03
    secure_boot: bool
    secure_boot_template: str = SECURE_BOOT_TEMPLATE
    boot_mode: str = "pxe"
    install_iso: str | None = None
    answer_iso: str | None = None

    @property
    def tag(self) -> str:
        return task_tag(self.task_id)

    @property
    def hyperv_mac(self) -> str:
        """The form Set-VMNetworkAdapter -StaticMacAddress takes: 00155D010203."""
        return self.mac.replace(":", "").upper()

    @property
    def legacy_nic(self) -> bool:
        """A generation 1 VM boots from the network only through a legacy (emulated) adapter."""
        return self.generation == 1 and self.boot_mode == "pxe"


def task_mac(task_id: int) -> str:
    """A locally administered MAC derived from the task id. Hyper-V assigns a dynamic MAC only at
    the first start, but the PXE services must know it before: each VM gets a static one, outside
    the host's own 00:15:5d pool, and the same on every attempt."""
    digest = hashlib.sha256(f"octoprov-hyperv:{task_id}".encode()).digest()
    return "02:" + ":".join(f"{byte:02x}" for byte in digest[:5])


def disk_plans(hostname: str, directory: str, disks: Sequence[DiskSpec]) -> tuple[DiskPlan, ...]:
    """One VHDX per disk, OS disk first, named after the machine and the disk's purpose
    (``web01-os.vhdx``, ``web01-data-1.vhdx``, ``web01-data-2.vhdx``)."""
    return tuple(DiskPlan(ntpath.join(directory, f"{name}.vhdx"), disk.size_gb * GIB, disk.type == "fixed")
                 for name, disk in named_disks(hostname, disks))


def answer_iso_path(directory: str, hostname: str) -> str:
    return ntpath.join(directory, hostname + ANSWER_ISO_SUFFIX)


# --- reads --------------------------------------------------------------------------------------


def read_vm(name: str) -> Cmdlet:
    return fixed(PACKAGE, "Read-OctoprovVM", Name=name)


def read_host_storage() -> Cmdlet:
    return fixed(PACKAGE, "Read-OctoprovHostStorage")


def read_switches() -> Cmdlet:
    return fixed(PACKAGE, "Read-OctoprovSwitches")


def existing_files(paths: list[str]) -> Cmdlet:
    """One boolean per path: leftovers must not be overwritten or adopted."""
    return cmdlet("Test-Path", LiteralPath=list(paths))


def file_hash(path: str) -> Pipeline:
    return pipeline(cmdlet("Get-FileHash", LiteralPath=path, Algorithm="SHA256"),
                    cmdlet("Select-Object", ExpandProperty="Hash"))


# --- create ---------------------------------------------------------------------------------------


def create_vm(plan: VmPlan) -> list[Pipeline]:
    """The spec's creation script, step by step. The VM is tagged in the same pipeline that creates
    it (New-VM's output goes straight to Set-VM), so no untagged VM of this task can exist; the
    tag says ``creating`` until the last command marks it complete."""
    name = plan.name
    commands: list[Pipeline] = [
        pipeline(cmdlet("New-VM", Name=name, Generation=plan.generation, MemoryStartupBytes=plan.memory_bytes,
                        Path=plan.vm_path, NoVHD=True, ErrorAction="Stop"),
                 cmdlet("Set-VM", Notes=plan.tag + CREATING)),
        pipeline(cmdlet("Set-VMProcessor", VMName=name, Count=plan.cpu)),
    ]
    for index, disk in enumerate(plan.disks):
        kind = {"Fixed": True} if disk.fixed else {"Dynamic": True}
        commands.append(pipeline(cmdlet("New-VHD", Path=disk.path, SizeBytes=disk.size_bytes, **kind)))
        commands.append(pipeline(cmdlet("Add-VMHardDiskDrive", VMName=name, Path=disk.path,
                                        **_disk_slot(plan.generation, index))))
    commands += network(plan)
    commands += firmware(plan)
    if plan.boot_mode == "pxe":
        commands += boot_order(plan)
    commands.append(pipeline(cmdlet("Set-VM", Name=name, Notes=plan.tag)))
    return commands


def _disk_slot(generation: int, index: int) -> dict[str, Any]:
    """Generation 1 boots from IDE only: the OS disk takes IDE 0:0, the others go on SCSI.
    Generation 2 has SCSI only, where Hyper-V picks the next free location."""
    if generation == 2:
        return {}
    if index == 0:
        return {"ControllerType": "IDE", "ControllerNumber": 0, "ControllerLocation": 0}
    return {"ControllerType": "SCSI"}


def network(plan: VmPlan) -> list[Pipeline]:
    name = plan.name
    if plan.legacy_nic:
        commands = [pipeline(cmdlet("Remove-VMNetworkAdapter", VMName=name, Name=DEFAULT_ADAPTER)),
                    pipeline(cmdlet("Add-VMNetworkAdapter", VMName=name, Name=LEGACY_ADAPTER, IsLegacy=True,
                                    SwitchName=plan.switch))]
    else:
        commands = [pipeline(cmdlet("Connect-VMNetworkAdapter", VMName=name, SwitchName=plan.switch))]
    if plan.vlan:
        commands.append(pipeline(cmdlet("Set-VMNetworkAdapterVlan", VMName=name, Access=True, VlanId=plan.vlan)))
    commands.append(pipeline(cmdlet("Set-VMNetworkAdapter", VMName=name, StaticMacAddress=plan.hyperv_mac)))
    return commands


def firmware(plan: VmPlan) -> list[Pipeline]:
    """Secure Boot exists on generation 2 (UEFI) only; generation 1 has a BIOS."""
    if plan.generation == 1:
        return []
    if plan.secure_boot:
        return [pipeline(cmdlet("Set-VMFirmware", VMName=plan.name, EnableSecureBoot="On",
                                SecureBootTemplate=plan.secure_boot_template))]
    return [pipeline(cmdlet("Set-VMFirmware", VMName=plan.name, EnableSecureBoot="Off"))]


def boot_order(plan: VmPlan) -> list[Pipeline]:
    """Network first for PXE, the installation DVD first for ISO mode; the disk follows, so the
    installed system boots once the installer is done with the machine."""
    if plan.generation == 1:
        return [pipeline(cmdlet("Set-VMBios", VMName=plan.name, StartupOrder=list(BIOS_ORDER[plan.boot_mode])))]
    if plan.boot_mode == "pxe":
        return [pipeline(fixed(PACKAGE, "Set-OctoprovFirstBootDevice", VMName=plan.name, Device="Network"))]
    return [pipeline(fixed(PACKAGE, "Set-OctoprovFirstBootDevice", VMName=plan.name, Device="DVD",
                           Path=plan.install_iso))]


def disk_first(plan: VmPlan) -> list[Pipeline]:
    """Once the OS is installed: the OS disk first, so a reboot after the task does not wait out the
    network boot (generation 1: IDE, where the OS disk is IDE 0:0). The devices the installation booted
    from stay after it, in their order."""
    if plan.generation == 1:
        order = ["IDE", *(device for device in BIOS_ORDER[plan.boot_mode] if device != "IDE")]
        return [pipeline(cmdlet("Set-VMBios", VMName=plan.name, StartupOrder=order))]
    return [pipeline(fixed(PACKAGE, "Set-OctoprovFirstBootDevice", VMName=plan.name, Device="Disk",
                           Path=plan.disks[0].path))]


# --- ISO mode -------------------------------------------------------------------------------------


def upload(path: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[Pipeline]:
    """Write ``data`` to ``path`` on the host in chunks sent as byte-array parameters, then read
    back its SHA-256 (the caller compares it)."""
    chunks = [data[start:start + chunk_bytes] for start in range(0, len(data), chunk_bytes)] or [b""]
    commands = [pipeline(fixed(PACKAGE, "Write-OctoprovFileChunk", Path=path, Data=chunk, Append=index > 0))
                for index, chunk in enumerate(chunks)]
    return [*commands, file_hash(path)]


def attach_isos(plan: VmPlan, attached: list[str]) -> list[Pipeline]:
    """The installation ISO and the answer ISO in two DVD drives (generation 1: the IDE 1:0 drive
    New-VM made, and IDE 1:1); drives already holding them are left alone."""
    commands = []
    wanted = [(plan.install_iso, 0), (plan.answer_iso, 1)]
    for path, location in wanted:
        if path in attached:
            continue
        if plan.generation == 2:
            commands.append(pipeline(cmdlet("Add-VMDvdDrive", VMName=plan.name, Path=path)))
        elif location == 0:
            commands.append(pipeline(cmdlet("Set-VMDvdDrive", VMName=plan.name, ControllerNumber=1,
                                            ControllerLocation=0, Path=path)))
        else:
            commands.append(pipeline(cmdlet("Add-VMDvdDrive", VMName=plan.name, ControllerNumber=1,
                                            ControllerLocation=1, Path=path)))
    return commands


# --- power and removal ----------------------------------------------------------------------------


def start_vm(name: str) -> Pipeline:
    return pipeline(cmdlet("Start-VM", Name=name))


def press_enter(name: str) -> Pipeline:
    """Generation 2 firmware boots a Windows DVD only after "Press any key to boot from CD or DVD";
    Enter, typed through the VM's virtual keyboard for ten seconds after the start, is that key."""
    return pipeline(fixed(PACKAGE, "Send-OctoprovEnterKey", VMName=name, Seconds=10))


def stop_vm(name: str) -> Pipeline:
    return pipeline(cmdlet("Stop-VM", Name=name, TurnOff=True, Force=True))


def remove_vm(name: str, files: list[str], running: bool) -> list[Pipeline]:
    """Rollback: power off, remove the VM, then delete its disks and answer ISO (never the
    installation ISO, which is not the task's)."""
    commands = [stop_vm(name)] if running else []
    commands.append(pipeline(cmdlet("Remove-VM", Name=name, Force=True)))
    commands += [pipeline(cmdlet("Remove-Item", LiteralPath=path, Force=True)) for path in files]
    return commands
