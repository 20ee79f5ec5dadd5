"""The VM a task asks for on vSphere, as the ``vim.vm.ConfigSpec`` sent to ``CreateVM_Task`` and the
reconfigurations after it: pure functions of a :class:`VmPlan` and a :class:`Placement`, so the dry run
shows exactly what a task would send.

Hardware: an LSI Logic SAS controller per 15 disks (Windows and Linux installers carry its driver), an
E1000e NIC (the same, and it network-boots on BIOS and EFI), thin or thick (lazily zeroed) disks in the
VM's folder of the datastore, named after the machine (``[ds] web01/web01-os.vmdk``). The VM is tagged
in its annotation by the spec that creates it (``octoprov-task:<id> creating``); the last
reconfiguration marks it complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov.errors import PermanentError
from octoprov.targets import tags
from octoprov.targets.disks import named_disks
from octoprov.targets.vmware.connection import load_vim
from octoprov.targets.vmware.options import vsphere_options
from octoprov.targets.vmware.placement import DISTRIBUTED, Placement

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.taskspec import VmSpec

KIB_PER_GIB = 1024 * 1024
DISKS_PER_CONTROLLER = 15  # SCSI units 0-15, 7 being the controller's own
MAX_CONTROLLERS = 4
MAX_DISKS = DISKS_PER_CONTROLLER * MAX_CONTROLLERS
GUEST_IDS = {"windows": "windows9Server64Guest", "linux": "otherLinux64Guest"}
CONTROLLER_KEY, NIC_KEY, DISK_KEY = -100, -200, -300  # keys of devices added by the spec; vSphere assigns the real ones


@dataclass(frozen=True)
class DiskPlan:
    name: str  # file name without .vmdk
    size_gb: int
    thin: bool


@dataclass(frozen=True)
class VmPlan:
    name: str
    task_id: int
    cpu: int
    memory_mb: int
    firmware: str  # efi | bios
    secure_boot: bool
    guest_id: str
    disks: tuple[DiskPlan, ...]
    mac: str | None  # None: vSphere generates one

    @property
    def tag(self) -> str:
        return tags.task_tag(self.task_id)


def vm_spec(ctx: TaskContext) -> VmSpec:
    """The request's ``vm`` section, which the request's validation requires of a vSphere task."""
    if ctx.spec.vm is None:
        raise PermanentError("a vSphere task needs a vm section")
    return ctx.spec.vm


def vm_plan(ctx: TaskContext) -> VmPlan:
    """Generation 2 is EFI, 1 is BIOS; Secure Boot as the request settled it, off while an unsigned installer
    runs (``enable_secure_boot`` turns it on before the installed OS first starts)."""
    vm = vm_spec(ctx)
    options = vsphere_options(ctx.node.options if ctx.node else None)
    return VmPlan(
        name=ctx.hostname, task_id=ctx.task_id, cpu=vm.cpu, memory_mb=vm.memory_gb * 1024,
        firmware="efi" if vm.generation == 2 else "bios",
        secure_boot=bool(vm.secureboot) and not ctx.secure_boot_after_install,
        guest_id=options.guest_id or GUEST_IDS.get(ctx.os_type, GUEST_IDS["linux"]),
        disks=tuple(DiskPlan(name, disk.size_gb, disk.type == "dynamic") for name, disk in
                    named_disks(ctx.hostname, vm.disks)),
        mac=ctx.mac_address,
    )


def disk_path(datastore_name: str, vm_name: str, disk: DiskPlan) -> str:
    return f"[{datastore_name}] {vm_name}/{disk.name}.vmdk"


def create_spec(plan: VmPlan, where: Placement) -> Any:
    """The whole VM in one ``CreateVM_Task``; the boot order follows once vSphere has keyed its devices."""
    vim = load_vim()

    if len(plan.disks) > MAX_DISKS:
        raise PermanentError(f"a vSphere VM here takes at most {MAX_DISKS} disks")
    store = where.datastore.name
    add = vim.vm.device.VirtualDeviceSpec.Operation.add
    changes = []
    controllers = (len(plan.disks) + DISKS_PER_CONTROLLER - 1) // DISKS_PER_CONTROLLER
    for bus in range(max(controllers, 1)):
        controller = vim.vm.device.VirtualLsiLogicSASController(
            key=CONTROLLER_KEY - bus, busNumber=bus, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing)
        changes.append(vim.vm.device.VirtualDeviceSpec(operation=add, device=controller))
    for index, disk in enumerate(plan.disks):
        bus, slot = divmod(index, DISKS_PER_CONTROLLER)
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=disk_path(store, plan.name, disk), diskMode="persistent", thinProvisioned=disk.thin,
            eagerlyScrub=False, datastore=where.datastore)
        device = vim.vm.device.VirtualDisk(
            key=DISK_KEY - index, controllerKey=CONTROLLER_KEY - bus, unitNumber=slot if slot < 7 else slot + 1,
            capacityInKB=disk.size_gb * KIB_PER_GIB, capacityInBytes=disk.size_gb * KIB_PER_GIB * 1024,
            backing=backing)
        changes.append(vim.vm.device.VirtualDeviceSpec(
            operation=add, fileOperation=vim.vm.device.VirtualDeviceSpec.FileOperation.create, device=device))
    changes.append(vim.vm.device.VirtualDeviceSpec(operation=add, device=nic(plan, where)))
    return vim.vm.ConfigSpec(
        name=plan.name, annotation=plan.tag + tags.CREATING, guestId=plan.guest_id, numCPUs=plan.cpu,
        numCoresPerSocket=1, memoryMB=plan.memory_mb, firmware=plan.firmware,
        bootOptions=vim.vm.BootOptions(efiSecureBootEnabled=plan.secure_boot if plan.firmware == "efi" else None),
        files=vim.vm.FileInfo(vmPathName=f"[{store}]"), deviceChange=changes)


def nic(plan: VmPlan, where: Placement) -> Any:
    vim = load_vim()

    group = where.port_group
    backing: Any
    if group.kind == DISTRIBUTED:
        backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(switchUuid=group.switch_uuid, portgroupKey=group.key))
    else:
        backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=group.name, network=group.network)
    return vim.vm.device.VirtualE1000e(
        key=NIC_KEY, backing=backing, addressType="manual" if plan.mac else "generated", macAddress=plan.mac,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True))


def first_nic(vm: Any) -> Any | None:
    vim = load_vim()

    return next((d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)), None)


def os_disk(vm: Any) -> Any | None:
    """The first disk of the VM's first controller: the OS disk (it is created first)."""
    vim = load_vim()

    disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    return min(disks, key=lambda d: d.key, default=None)


def boot_order(nic_key: int, disk_key: int | None, network_first: bool) -> list[Any]:
    """The NIC then the OS disk while the OS installs; the disk then the NIC once it is installed (a disk that
    does not boot still reaches the PXE services)."""
    vim = load_vim()

    network = vim.vm.BootOptions.BootableEthernetDevice(deviceKey=nic_key)
    disks = [vim.vm.BootOptions.BootableDiskDevice(deviceKey=disk_key)] if disk_key is not None else []
    return [network, *disks] if network_first else [*disks, network]


def boot_spec(vm: Any, network_first: bool, *, secure_boot: bool | None = None, tag: str | None = None) -> Any:
    """A reconfiguration setting the VM's boot order (and Secure Boot, and its tag, when given)."""
    vim = load_vim()

    card = first_nic(vm)
    if card is None:
        raise PermanentError(f"{vm.name} has no network adapter")
    disk = os_disk(vm)
    options = vim.vm.BootOptions(bootOrder=boot_order(card.key, disk.key if disk else None, network_first))
    # the VM's Secure Boot setting is sent again: the simulator replaces the whole BootOptions (vSphere merges)
    current = vm.config.bootOptions.efiSecureBootEnabled if vm.config.bootOptions else None
    options.efiSecureBootEnabled = secure_boot if secure_boot is not None else current
    spec = vim.vm.ConfigSpec(bootOptions=options)
    if tag is not None:
        spec.annotation = tag
    return spec


def network_first(vm: Any) -> bool:
    """Whether the VM's boot order starts with a NIC."""
    vim = load_vim()

    order = (vm.config.bootOptions.bootOrder if vm.config.bootOptions else None) or []
    return bool(order) and isinstance(order[0], vim.vm.BootOptions.BootableEthernetDevice)
