"""Power and one-time network boot through a machine's BMC, over Redfish with the sushy client.

The task's machine is the Redfish system named in the machine's BMC settings, or else the one
whose network card has the machine's MAC (a BMC may manage several systems, a chassis of blades).
"Power on" first sets the next boot, once, to PXE, so the machine lands in Octoprov's network boot
whatever its persistent boot order says, and restarts it if it was already running. Once the OS is
installed, a persistent override makes the machine boot its hard disk.

A machine registered with Secure Boot whose installer is unsigned (``ctx.secure_boot_after_install``,
octoprov/secureboot.py) has it turned off through the system's SecureBoot resource
(``SecureBootEnable``) before that power-on, and on again once the installer has powered the machine
off (``enable_secure_boot``), or by a rollback. Each part reads the setting before it writes it, so a
repeated step changes nothing.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from octoprov import secureboot
from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.targets.base import PowerInterface

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext

# sushy carries no type information (no py.typed): its objects are Any to a type checker
System = Any  # sushy.resources.system.system.System

POWER_POLL_S = 2.0  # how often enable_secure_boot asks the BMC whether the installer has powered the machine off


def _sushy() -> ModuleType:
    """sushy, loaded only where a BMC is used."""
    return importlib.import_module("sushy")


@contextlib.contextmanager
def redfish_system(ctx: TaskContext) -> Iterator[System]:
    """The sushy system object of the task's machine; BMC failures as target errors."""
    if ctx.node is None:
        raise PermanentError("a machine powered through its BMC needs the machine's BMC settings")
    with machine_system(ctx.node, [ctx.mac_address] if ctx.mac_address else []) as system:
        yield system


@contextlib.contextmanager
def machine_system(node: NodeInfo, fallback_macs: list[str] | None = None, *,
                   server_side_retries: int = 2, retry_delay_s: int = 2) -> Iterator[System]:
    """The sushy system object of a registered machine (by its BMC settings and MACs); BMC failures as
    target errors, whose messages name the BMC and never the password. sushy retries a BMC that does not
    answer or answers 5xx (busy) ``server_side_retries`` times, ``retry_delay_s`` apart: seconds, not its default
    half minute, since a target error is retried by the task's own step retry with backoff, which frees
    the worker slot in between."""
    sushy = _sushy()
    bmc = (node.options or {}).get("bmc") or {}
    address = bmc.get("address") or node.endpoint
    try:
        root = sushy.Sushy(f"{address}/redfish/v1", username=node.username, password=node.credentials.get("password"),
                           verify=bool(bmc.get("verifyCertificate", True)), server_side_retries=server_side_retries,
                           server_side_retries_delay=retry_delay_s)
        macs = set(node.mac_addresses or fallback_macs or [])
        yield _find_system(root, bmc.get("systemId"), macs)
    except sushy.exceptions.ConnectionError as exc:
        raise TargetUnreachable(f"the BMC at {address} does not answer: {_reason(exc)}") from None
    except sushy.exceptions.AccessError:
        raise PermanentError(f"the BMC at {address} refused the credentials of machine {node.name}") from None
    except sushy.exceptions.ResourceNotFoundError as exc:
        raise PermanentError(f"the BMC at {address} has no such resource: {_reason(exc)}") from None
    except sushy.exceptions.ServerSideError as exc:
        raise TargetUnreachable(f"the BMC at {address} failed: {_reason(exc)}") from None
    except sushy.exceptions.SushyError as exc:
        raise PermanentError(f"the BMC at {address}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).splitlines()[0][:300]


def _find_system(root: Any, system_id: str | None, macs: set[str]) -> System:
    if system_id:
        path = system_id if system_id.startswith("/redfish/") else f"/redfish/v1/Systems/{system_id}"
        return root.get_system(path)
    identities = list(root.get_system_collection().members_identities)
    for identity in identities:
        system = root.get_system(identity)
        with contextlib.suppress(Exception):  # a system without network interfaces listed
            found = {(nic.mac_address or "").lower() for nic in system.ethernet_interfaces.get_members()}
            if found & macs:
                return system
    if len(identities) == 1:
        return root.get_system(identities[0])
    raise PermanentError(f"none of the BMC's {len(identities)} systems has a network card with MAC "
                         f"{', '.join(sorted(macs))}; name the system in the machine's bmc.systemId")


def eject(ctx: TaskContext) -> str:
    with redfish_system(ctx) as system:
        return "Boot media ejected through the BMC" if eject_media(system) else "No media in the BMC's virtual drives"


def boot_from_disk(ctx: TaskContext) -> str:
    """A persistent boot override to the hard disk, target and frequency in one PATCH: the firmware's own
    order may put the network first, and not every BMC drops the one-time PXE override of ``power_on``
    after use (sushy-tools keeps it for good). The next task's one-time PXE replaces it."""
    with redfish_system(ctx) as system:
        if not _boot_disk(system):
            return "The BMC boots the hard disk already (persistent override)"
        return "Boot override set through the BMC: hard disk, persistent"


def _boot_disk(system: System) -> bool:
    """The persistent hard-disk override set; False when it was set already."""
    sushy = _sushy()
    boot = system.boot
    if boot.target == sushy.BOOT_SOURCE_TARGET_HDD and boot.enabled == sushy.BOOT_SOURCE_ENABLED_CONTINUOUS:
        return False
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_HDD, enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS)
    return True


def _set_secure_boot(system: System, enabled: bool) -> bool:
    """``SecureBootEnable`` set through the system's SecureBoot resource; False when it was so already. A
    BMC applies it at the machine's next boot, so it is set before the machine is powered on. A system
    without the resource cannot honour the machine's ``secureBoot`` registration: a permanent error."""
    sushy = _sushy()
    try:
        resource = system.secure_boot
    except sushy.exceptions.MissingAttributeError:
        raise PermanentError("the BMC exposes no SecureBoot resource for the machine, so Octoprov cannot turn "
                             "Secure Boot off for its unsigned installer and on again after it; register the "
                             "machine without secureBoot, or use an image with a signed kernel") from None
    if resource.enabled is enabled:
        return False
    resource.set_enabled(enabled)
    return True


def enable_secure_boot(ctx: TaskContext) -> str:
    """Once the installer has powered the machine off after reporting the OS installed: Secure Boot on,
    the persistent hard-disk override (the install's network boot is over, and an unsigned iPXE would only
    be refused), then powered on, so the installed OS first boots with Secure Boot enforced. A machine
    still on after ``POWER_OFF_WAIT_S`` is a transient failure, retried; a running machine with Secure
    Boot on already means a repeated step, and nothing is done."""
    sushy = _sushy()
    with redfish_system(ctx) as system:
        running = (sushy.POWER_STATE_ON, sushy.POWER_STATE_POWERING_ON)
        if system.power_state in running and system.secure_boot.enabled is True:
            return "Secure Boot on already; the machine is running"
        # not Off: On, PoweringOff, or a BMC's not-yet-known
        secureboot.wait_until_off(ctx, lambda: system.power_state == sushy.POWER_STATE_OFF, POWER_POLL_S,
                                  refresh=system.refresh)
        _set_secure_boot(system, True)
        _boot_disk(system)
        system.reset_system(sushy.RESET_ON)
        return "Secure Boot on through the BMC, boot override to the hard disk (persistent); powered on"


def restore_secure_boot(ctx: TaskContext) -> str:
    """Rollback of a task that turned Secure Boot off for its installer: on again, as the machine is
    registered, whatever its power state (the BMC applies it at the machine's next boot)."""
    with redfish_system(ctx) as system:
        if _set_secure_boot(system, True):
            return "Secure Boot on again through the BMC"
        return "Secure Boot on already"


CD_TYPES = ("CD", "DVD")  # the virtual drives a boot ISO goes into
REMOVABLE_TYPES = ("Floppy", "USBStick")  # where an answer floppy goes


def _media_devices(system: System) -> list[Any]:
    """The BMC's virtual media devices: the system's own collection (newer BMCs) or its managers'."""
    found = []
    with contextlib.suppress(Exception):  # no VirtualMedia link on the system
        found = list(system.virtual_media.get_members())
    if not found:
        for manager in system.managers:
            with contextlib.suppress(Exception):
                found += list(manager.virtual_media.get_members())
    return found


def _device_for(devices: list[Any], types: tuple[str, ...], taken: list[Any]) -> Any | None:
    for device in devices:
        if device not in taken and {str(t) for t in device.json.get("MediaTypes") or []} & set(types):
            return device
    return None


def insert_media(system: System, urls: dict[str, str]) -> str:
    """The task's media into the BMC's virtual drives (whatever was in them ejected first): ``boot.iso``
    into a CD or DVD drive, ``answers.img`` into a floppy or USB stick. The URLs are the task's own and
    secret: they are never part of a message."""
    devices, used, names = _media_devices(system), list[Any](), list[str]()
    for name, url in urls.items():
        types = CD_TYPES if name.endswith(".iso") else REMOVABLE_TYPES
        device = _device_for(devices, types, used)
        if device is None:
            kind = "CD or DVD" if types == CD_TYPES else "floppy or USB stick"
            raise PermanentError(f"the BMC offers no virtual {kind} drive for {name}: install this machine by "
                                 "network boot (bootMethod pxe)")
        if device.json.get("Inserted"):
            device.eject_media()
        device.insert_media(url, inserted=True, write_protected=True)
        used.append(device)
        names.append(f"{name} into the virtual {device.json.get('Name') or device.identity}")
    return ", ".join(names)


def eject_media(system: System) -> bool:
    """Every virtual drive of the BMC emptied; False when none held anything."""
    ejected = False
    for device in _media_devices(system):
        if device.json.get("Inserted") or device.json.get("Image"):
            device.eject_media()
            ejected = True
    return ejected


class RedfishPower(PowerInterface):
    """``media``: the machine starts once from these media (name: URL) in the BMC's virtual drives instead of
    the network."""

    def __init__(self, media: dict[str, str] | None = None):
        self.media = media or {}

    def power_on(self, ctx: TaskContext) -> str:
        """Into a one-time network (or virtual CD) boot; with Secure Boot off first when the task's
        installer is unsigned."""
        sushy = _sushy()
        with redfish_system(ctx) as system:
            insecure = ""
            if ctx.secure_boot_after_install:
                _set_secure_boot(system, False)
                insecure = ", Secure Boot off for the unsigned installer (on again before the OS first boots)"
            if self.media:
                inserted = insert_media(system, self.media)
                system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
                into = f"a one-time boot from the virtual CD ({inserted})"
            else:
                system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
                into = "a one-time network boot"
            if system.power_state == sushy.POWER_STATE_ON:
                system.reset_system(sushy.RESET_FORCE_RESTART)
                return f"Restarted through the BMC into {into}{insecure}"
            system.reset_system(sushy.RESET_ON)
            return f"Powered on through the BMC into {into}{insecure}"

    def power_off(self, ctx: TaskContext) -> str:
        sushy = _sushy()
        with redfish_system(ctx) as system:
            if system.power_state == sushy.POWER_STATE_OFF:
                return "Already off"
            system.reset_system(sushy.RESET_FORCE_OFF)
            return "Powered off through the BMC"
