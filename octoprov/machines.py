"""Bare-metal machines: servers Octoprov installs, known by the MACs of their network cards and,
optionally, reached through their BMC (Redfish, or IPMI where the BMC has no Redfish) so a task can
switch them on into a network boot instead of waiting for someone to press the button. A machine's
kind is its BMC's protocol, or "manual" without one.

A MAC belongs to one machine only: a bare-metal task finds its machine by the MAC it names, and
two machines claiming one card would make that ambiguous. BMC credentials are encrypted at rest
and never leave through a view; an address that carries a user or password is refused, so none
is ever stored in clear.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.engine import ScalarResult
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.crypto import Vault
from octoprov.errors import Conflict, InvalidRequest
from octoprov.logs import redactor
from octoprov.models import MAX_ID, Node, Task
from octoprov.nodes import add_node, check_site, flush_named, get_node, name_taken
from octoprov.specs import Spec, Timestamp, View, report
from octoprov.validation.macs import canonical_mac

BAREMETAL = "baremetal"
BMC_KINDS = ("redfish", "ipmi")  # a machine of one of these kinds is powered through its BMC
KINDS = (*BMC_KINDS, "manual")
IPMI_PORT = 623  # where an IPMI BMC listens (RMCP+, UDP) unless its address says otherwise
# kinds that cannot switch Secure Boot off for an unsigned installer and on again: IPMI has no command for it
NO_SECURE_BOOT_CONTROL = ("ipmi",)

GIB = 1 << 30  # a disk's sizeGb, as the hypervisor targets count it

Mac = Annotated[str, Field(max_length=17), AfterValidator(canonical_mac)]


class BmcSpec(Spec):
    """How the machine's BMC is reached. Redfish: ``http(s)://host[:port]``. IPMI (2.0, RMCP+):
    ``ipmi://host[:port]``, port 623 unless given; an IPMI BMC drives the one machine it sits in and has
    no certificate, so the Redfish-only ``systemId`` and ``verifyCertificate: false`` are refused there
    rather than ignored, and neither is stored."""

    address: str = Field(min_length=1, max_length=500, description="Redfish: https://bmc-host[:port] (the service "
                         "root is /redfish/v1 below it); IPMI: ipmi://bmc-host[:port] (port 623 unless given)")
    protocol: Literal["redfish", "ipmi"] = Field(default="redfish", description="ipmi for a BMC without Redfish: "
                                                 "power and a one-time network boot only, no Secure Boot control")
    system_id: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$",
                                  description="Redfish only: the system to drive; default: the one with this "
                                  "machine's MAC")
    verify_certificate: bool = Field(default=True, description="Redfish only: check the BMC's TLS certificate")

    @field_validator("address")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            port = parts.port  # raises ValueError on a bad port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("not a valid port")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold a user or password: give them as username and password (stored "
                             "encrypted)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _fits_protocol(self) -> Self:
        parts = urlsplit(self.address)
        if self.protocol == "ipmi":
            report({"address": None if _is_bmc_url(parts, ("ipmi",)) else
                    "must be ipmi://host[:port] (port 623 unless given), the BMC's address",
                    "systemId": "Redfish only: an IPMI BMC drives the one machine it sits in" if self.system_id
                    else None,
                    "verifyCertificate": None if self.verify_certificate else
                    "Redfish only: IPMI has no certificate to verify"})
        elif not _is_bmc_url(parts, ("http", "https")):
            report({"address": "must be http(s)://host[:port], the BMC's address"})
        return self

    def stored(self) -> dict[str, Any]:
        """The settings as a machine keeps them: without the Redfish-only ones for an IPMI BMC."""
        settings = self.model_dump(by_alias=True)
        if self.protocol == "ipmi":
            del settings["systemId"], settings["verifyCertificate"]
        return settings


def _is_bmc_url(parts: SplitResult, schemes: tuple[str, ...]) -> bool:
    """scheme://host[:port], nothing below the host."""
    return (parts.scheme in schemes and bool(parts.hostname) and parts.path in ("", "/")
            and not parts.query and not parts.fragment)


def ipmi_endpoint(address: str) -> tuple[str, int]:
    """The host and port of an IPMI BMC's ``ipmi://host[:port]`` (an IPv6 host without its brackets)."""
    parts = urlsplit(address)
    return parts.hostname or "", parts.port or IPMI_PORT


class MachineSpec(Spec):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")
    mac_addresses: list[Mac] = Field(min_length=1, max_length=16,
                                     description="Every network card it may boot from; the first is its main one")
    bmc: BmcSpec | None = None
    username: str | None = Field(default=None, min_length=1, max_length=255, description="BMC user")
    password: str | None = Field(default=None, min_length=1, max_length=1024, description="BMC password, stored "
                                                                                        "encrypted")
    secure_boot: bool = Field(default=False, description="The machine's firmware enforces UEFI Secure Boot: it is "
                              "network-booted through the signed shim and GRUB chain instead of iPXE")
    boot_method: Literal["pxe", "virtualMedia"] = Field(
        default="pxe", description="How its installer boots: from the network (pxe), or from a boot ISO the "
        "Redfish BMC inserts into its virtual CD (virtualMedia); a task may choose otherwise")
    site_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="The site it belongs to (GET "
                                "/provisioning/sites); none: the central site. Its tasks run at that site")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.mac_addresses)) != len(self.mac_addresses):
            report({"macAddresses": "lists a MAC twice"})
        if self.bmc is None and (self.username or self.password):
            report({"bmc": "BMC credentials given without a BMC address"})
        if self.boot_method == "virtualMedia" and (self.bmc is None or self.bmc.protocol != "redfish"):
            report({"bootMethod": "virtualMedia needs a Redfish BMC (bmc.address) to insert the boot ISO"})
        return self


class MachineView(View):
    id: int
    name: str
    kind: str
    mac_addresses: list[str]
    bmc: dict[str, Any] | None
    username: str | None
    has_credentials: bool
    secure_boot: bool = False
    boot_method: str = "pxe"
    site_id: int | None = None
    hardware: dict[str, Any] | None = None
    inspection: dict[str, Any] | None = Field(default=None, description="The last inventory read from the BMC: "
                                              "state (queued, running, done, failed), at, message")
    offered_macs: list[str] = Field(default_factory=list, description="Cards the BMC lists that the machine is "
                                    "not registered with: add them to macAddresses to boot from them")
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, node: Node) -> MachineView:
        options = node.options or {}
        return cls(id=node.id, name=node.name, kind=node.kind, mac_addresses=node.mac_addresses or [],
                   bmc=options.get("bmc"), username=node.username,
                   has_credentials=node.credentials_encrypted is not None,
                   secure_boot=bool(options.get("secureBoot")), boot_method=options.get("bootMethod") or "pxe",
                   site_id=node.site_id,
                   hardware=options.get("hardware"),
                   inspection=options.get("inspection"), offered_macs=offered_macs(node),
                   created_at=node.created_at, updated_at=node.updated_at)


def offered_macs(node: Node) -> list[str]:
    """Cards the BMC listed that the machine is not registered with, offered to the operator and never
    added silently: an unregistered card that boots from the network must not start an install."""
    registered = set(node.mac_addresses or [])
    nics = ((node.options or {}).get("hardware") or {}).get("nics") or []
    return [nic["mac"] for nic in nics if isinstance(nic, dict) and nic.get("mac") and nic["mac"] not in registered]


def check_task_fits(session: Session, mac: str | None, os_disk_gb: int | None) -> None:
    """A bare-metal task checked against what the machine's BMC reported (when it did): its MAC one of
    the machine's cards, its OS disk no larger than the machine's largest disk. A 400 naming the field,
    before anything runs."""
    machine = machine_for_mac(session, mac) if mac else None
    if machine is None or not (hardware := (machine.options or {}).get("hardware")):
        return
    problems: dict[str, str] = {}
    nics = [str(nic["mac"]) for nic in hardware.get("nics") or [] if isinstance(nic, dict) and nic.get("mac")]
    if nics and mac not in nics:
        problems["macAddress"] = (f"{mac} is registered for machine {machine.name} but its BMC lists no such card "
                                  f"({', '.join(nics)}); inspect the machine again or correct its MACs")
    sizes = [disk.get("sizeBytes") or 0 for disk in hardware.get("disks") or [] if isinstance(disk, dict)]
    largest = max(sizes) if sizes else None
    if os_disk_gb is not None and largest is not None and os_disk_gb * GIB > largest:
        problems["osDiskGb"] = (f"{os_disk_gb} GB is larger than machine {machine.name}'s largest disk "
                                f"({largest / GIB:.1f} GB, as its BMC reports)")
    if problems:
        raise InvalidRequest(problems)


def _machines(session: Session) -> ScalarResult[Node]:
    return session.scalars(select(Node).where(Node.role == BAREMETAL))


def machine_for_mac(session: Session, mac: str) -> Node | None:
    """The machine one of whose cards has this MAC."""
    for node in _machines(session):
        if mac in (node.mac_addresses or []):
            return node
    return None


def task_secure_boot(session: Session, task: Task) -> bool:
    """Whether a bare-metal task's machine boots with Secure Boot on (as registered)."""
    machine = machine_for_mac(session, task.mac_address) if task.mac_address else None
    return bool(machine is not None and (machine.options or {}).get("secureBoot"))


def check_secure_boot_control(machine: Node | None, secure_boot_after_install: bool) -> None:
    """Refuse a task whose unsigned installer needs Secure Boot off on a machine whose BMC cannot switch it
    (IPMI): powered on into the network boot with Secure Boot still enforced, its firmware would refuse the
    installer and the task would only time out. ``secure_boot_after_install`` as octoprov/secureboot.py says."""
    if not secure_boot_after_install or machine is None or machine.kind not in NO_SECURE_BOOT_CONTROL:
        return
    raise InvalidRequest({"os.imageId": (
        f"the installer is unsigned (Windows PE, or an image with signedKernel false) and machine {machine.name} "
        f"enforces Secure Boot, which Octoprov cannot switch off and on again through its {machine.kind.upper()} "
        "BMC: use an image with a signed kernel; or turn Secure Boot off in the machine's firmware and register "
        "it without secureBoot; or register it without a BMC, and the task's steps say when to switch it by hand")})


def _check_macs(session: Session, spec: MachineSpec, other_than: int | None = None) -> None:
    for index, mac in enumerate(spec.mac_addresses):
        owner = machine_for_mac(session, mac)
        if owner is not None and owner.id != other_than:
            raise InvalidRequest({f"macAddresses[{index}]": f"{mac} belongs to machine {owner.name} already"})


def _apply(node: Node, spec: MachineSpec, vault: Vault) -> None:
    node.name, node.username, node.mac_addresses = spec.name, spec.username, list(spec.mac_addresses)
    node.kind = spec.bmc.protocol if spec.bmc else "manual"
    node.site_id = spec.site_id
    node.endpoint = spec.bmc.address if spec.bmc else None
    options = dict(node.options or {})
    options.pop("bmc", None)
    options.pop("secureBoot", None)
    if spec.bmc:
        options["bmc"] = spec.bmc.stored()
    if spec.secure_boot:
        options["secureBoot"] = True
    options.pop("bootMethod", None)
    if spec.boot_method != "pxe":
        options["bootMethod"] = spec.boot_method
    node.options = options or None
    if spec.password:
        redactor.register(spec.password)
    node.credentials_encrypted = vault.encrypt_json({"password": spec.password}) if spec.password else None


def register_machine(session: Session, vault: Vault, spec: MachineSpec) -> Node:
    _check_macs(session, spec)
    check_site(session, spec.site_id)
    node = Node(role=BAREMETAL)
    _apply(node, spec, vault)
    return add_node(session, node)


def update_machine(session: Session, vault: Vault, node_id: int, spec: MachineSpec) -> Node:
    """Replace a machine's settings; a password left out is kept."""
    node = get_machine(session, node_id)
    if name_taken(session, spec.name, other_than=node_id):
        raise Conflict(f"name: a node called {spec.name!r} exists already")
    _check_macs(session, spec, other_than=node_id)
    check_site(session, spec.site_id)
    kept = vault.decrypt_json(node.credentials_encrypted) or {}
    if spec.password is None and kept.get("password") and spec.bmc is not None:
        spec = spec.model_copy(update={"password": kept["password"]})
    _apply(node, spec, vault)
    flush_named(session, spec.name)
    return node


def get_machine(session: Session, node_id: int) -> Node:
    return get_node(session, node_id, BAREMETAL, "bare-metal machine")


def remove_machine(session: Session, node_id: int) -> None:
    """Refused while a task is installing it: the task would lose its way to the BMC."""
    node = get_machine(session, node_id)
    busy = session.scalar(select(Task.id).where(Task.target_type == "baremetal", Task.status.in_(states.ACTIVE),
                                                Task.mac_address.in_(node.mac_addresses or [])).limit(1))
    if busy is not None:
        raise Conflict(f"machine {node_id} is being installed by task {busy}")
    session.delete(node)


def record_hardware(session: Session, mac: str, hardware: dict[str, Any]) -> None:
    """SMBIOS facts the machine's firmware reported when it booted (manufacturer, product, uuid)."""
    node = machine_for_mac(session, mac)
    if node is None or not hardware:
        return
    options = dict(node.options or {})
    seen = {**(options.get("hardware") or {}), **{k: v for k, v in hardware.items() if v}}
    if seen != options.get("hardware"):
        options["hardware"] = seen
        node.options = options
