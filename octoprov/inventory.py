"""Hardware inventory read from a machine's BMC before it is provisioned (Redfish).

What the BMC says is stored as the machine's ``hardware``, the same dictionary the iPXE SMBIOS report
fills (``manufacturer`` and ``product`` are the keys driver-pack matching reads), so that a task is
checked against the real machine when it is created (its MAC one of the machine's cards, its OS disk
no larger than the largest disk) instead of failing on the machine an hour later. Cards the BMC lists
that are not registered are offered to the operator, never added silently: an unregistered MAC that
DHCPs on the boot network must not start an install by surprise.

Inspection runs on the bare-metal worker pool (BMCs answer in seconds, sometimes tens of them); the
machine's ``inspection`` records its state, so the API and the UI can say where it stands.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from octoprov.context import node_info
from octoprov.errors import OctoprovError
from octoprov.machines import GIB, get_machine
from octoprov.targets import redfish

if TYPE_CHECKING:
    from octoprov.crypto import Vault
    from octoprov.db import Database
    from octoprov.models import Node

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# what the BMC owns in ``hardware``: replaced by each inspection (the firmware's iPXE report keeps the rest)
BMC_KEYS = ("serial", "sku", "biosVersion", "cpus", "cpuModel", "memoryBytes", "disks", "nics", "powerState",
            "secureBoot", "virtualMedia", "inspectedAt")


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _members(collection: Callable[[], Any]) -> list[Any]:
    """A sub-resource collection's members (or a list of resources), or none when the BMC does not link
    that collection."""
    try:
        found = collection()
        return list(found.get_members() if hasattr(found, "get_members") else found)
    except Exception as exc:  # MissingAttributeError, a 404, a malformed collection: the fact is unknown
        log.debug("inventory: %s", exc)
        return []


def _attribute(resource: Any, name: str) -> Callable[[], Any]:
    """A sub-resource read later, inside ``_members``' guard (sushy fetches it on access)."""
    return lambda: getattr(resource, name)


def _disks(system: Any) -> list[dict[str, Any]]:
    """Drives of the Storage resources, else the devices of the (older) SimpleStorage ones; media
    without a capacity (an empty card reader, a virtual CD) are no disks."""
    found: list[dict[str, Any]] = []
    for storage in _members(lambda: system.storage):
        for drive in _members(_attribute(storage, "drives")):
            size = _number(drive.json.get("CapacityBytes"))
            if size:
                found.append({"name": _text(drive.json.get("Name")) or drive.json.get("Id"), "sizeBytes": size})
    if found:
        return found
    for controller in _members(lambda: system.simple_storage):
        for device in controller.json.get("Devices") or []:
            size = _number(device.get("CapacityBytes")) if isinstance(device, dict) else None
            if size:
                found.append({"name": _text(device.get("Name")) or "disk", "sizeBytes": size})
    return found


def _nics(system: Any) -> list[dict[str, Any]]:
    nics = []
    for nic in _members(lambda: system.ethernet_interfaces):
        raw = nic.json
        mac = _text(raw.get("MACAddress")) or _text(raw.get("PermanentMACAddress"))
        if mac:
            nics.append({"mac": mac.lower().replace("-", ":"), "linkStatus": _text(raw.get("LinkStatus")),
                         "speedMbps": _number(raw.get("SpeedMbps"))})
    return nics


def _virtual_media(system: Any) -> list[str]:
    """The media types the BMC's virtual media devices take (``CD``, ``DVD``, ``USBStick``...), from the
    system's own collection (newer BMCs) or its managers'."""
    devices = _members(lambda: system.virtual_media)
    if not devices:
        for manager in _members(lambda: system.managers):
            devices += _members(_attribute(manager, "virtual_media"))
    types = {str(kind) for device in devices for kind in (device.json.get("MediaTypes") or [])}
    return sorted(types)


def _secure_boot(system: Any) -> bool | None:
    with contextlib.suppress(Exception):
        enabled = system.secure_boot.json.get("SecureBootEnable")
        return enabled if isinstance(enabled, bool) else None
    return None


def read_inventory(system: Any) -> dict[str, Any]:
    """The machine's facts from its Redfish ComputerSystem and sub-resources; a fact the BMC does not
    publish is left out rather than guessed."""
    raw = system.json
    processors = _members(lambda: system.processors)
    memory = (raw.get("MemorySummary") or {}).get("TotalSystemMemoryGiB")
    cpus = _number((raw.get("ProcessorSummary") or {}).get("Count"))
    if cpus is None and processors:
        cpus = sum(_number(p.json.get("TotalThreads")) or _number(p.json.get("TotalCores")) or 1 for p in processors)
    facts: dict[str, Any] = {
        "manufacturer": _text(raw.get("Manufacturer")),
        "product": _text(raw.get("Model")),
        "serial": _text(raw.get("SerialNumber")),
        "sku": _text(raw.get("SKU")),
        "uuid": _text(raw.get("UUID")),
        "biosVersion": _text(raw.get("BiosVersion")),
        "cpus": cpus,
        "cpuModel": next((m for m in (_text(p.json.get("Model")) for p in processors) if m), None),
        "memoryBytes": int(memory * GIB) if isinstance(memory, (int, float)) and memory > 0 else None,
        "disks": _disks(system),
        "nics": _nics(system),
        "powerState": _text(raw.get("PowerState")),
        "secureBoot": _secure_boot(system),
        "virtualMedia": _virtual_media(system),
    }
    return {key: value for key, value in facts.items() if value is not None and value != []}


def mark_queued(node: Node) -> None:
    """Record that an inspection was asked for (the worker sets the rest)."""
    node.options = {**(node.options or {}), "inspection": {"state": QUEUED, "at": _now()}}


def mark_failed(node: Node, message: str) -> dict[str, Any]:
    outcome = {"state": FAILED, "at": _now(), "message": message}
    node.options = {**(node.options or {}), "inspection": outcome}
    return outcome


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def inspect_machine(database: Database, vault: Vault, machine_id: int) -> dict[str, Any]:
    """Read the machine's BMC and store what it says; the outcome lands in the machine's ``inspection``
    (a BMC that does not answer is a failed inspection, not a failed worker). Returns that outcome."""
    with database.session() as session:
        node = get_machine(session, machine_id)
        node.options = {**(node.options or {}), "inspection": {"state": RUNNING, "at": _now()}}
        info = node_info(node, vault)
    if info.kind != "redfish":
        outcome = {"state": FAILED, "at": _now(), "message": "the machine has no Redfish BMC to read its inventory "
                                                              "from (IPMI reports no more than its FRU)"}
        facts = None
    else:
        try:
            # a BMC answers 500 for a resource it does not implement (sushy-tools' Storage of a domain
            # without pool volumes): one retry, not sushy's half minute per resource
            with redfish.machine_system(info, server_side_retries=1, retry_delay_s=1) as system:
                facts = read_inventory(system)
            counts = f"{len(facts.get('disks', []))} disk(s), {len(facts.get('nics', []))} network card(s)"
            outcome = {"state": DONE, "at": _now(), "message": counts}
        except OctoprovError as exc:
            facts, outcome = None, {"state": FAILED, "at": _now(), "message": str(exc)}
    with database.session() as session:
        node = get_machine(session, machine_id)
        options = dict(node.options or {})
        if facts is not None:
            store_inventory(options, facts)
        options["inspection"] = outcome
        node.options = options
    return outcome


def store_inventory(options: dict[str, Any], facts: dict[str, Any]) -> None:
    """The BMC's facts over the machine's ``hardware``: what the BMC owns is replaced as a whole (a disk
    removed since the last inspection is gone), what the firmware reported at boot and the BMC does not
    say (its platform, say) is kept."""
    hardware = {key: value for key, value in (options.get("hardware") or {}).items() if key not in BMC_KEYS}
    hardware.update(facts)
    hardware["inspectedAt"] = _now()
    options["hardware"] = hardware
