"""Bare-metal machines: servers Octoprov installs, known by the MACs of their network cards and,
optionally, reached through their BMC (Redfish) so a task can switch them on into a network boot
instead of waiting for someone to press the button.

A MAC belongs to one machine only: a bare-metal task finds its machine by the MAC it names, and
two machines claiming one card would make that ambiguous. BMC credentials are encrypted at rest
and never leave through a view.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.engine import ScalarResult
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.crypto import Vault
from octoprov.errors import Conflict, InvalidRequest
from octoprov.logs import redactor
from octoprov.models import Node, Task
from octoprov.nodes import add_node, flush_named, get_node, name_taken
from octoprov.specs import Spec, Timestamp, View, report
from octoprov.validation.macs import canonical_mac

BAREMETAL = "baremetal"
KINDS = ("redfish", "manual")

GIB = 1 << 30  # a disk's sizeGb, as the hypervisor targets count it

Mac = Annotated[str, Field(max_length=17), AfterValidator(canonical_mac)]


class BmcSpec(Spec):
    """How the machine's BMC is reached."""

    address: str = Field(min_length=1, max_length=500, description="https://bmc-host[:port] (Redfish service root "
                                                                    "is /redfish/v1 below it)")
    protocol: Literal["redfish"] = "redfish"
    system_id: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$",
                                  description="The Redfish system to drive; default: the one with this machine's MAC")
    verify_certificate: bool = True

    @field_validator("address")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("not a valid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("must be http(s)://host[:port], the BMC's address")
        return value.rstrip("/")


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


def _check_macs(session: Session, spec: MachineSpec, other_than: int | None = None) -> None:
    for index, mac in enumerate(spec.mac_addresses):
        owner = machine_for_mac(session, mac)
        if owner is not None and owner.id != other_than:
            raise InvalidRequest({f"macAddresses[{index}]": f"{mac} belongs to machine {owner.name} already"})


def _apply(node: Node, spec: MachineSpec, vault: Vault) -> None:
    node.name, node.username, node.mac_addresses = spec.name, spec.username, list(spec.mac_addresses)
    node.kind = "redfish" if spec.bmc else "manual"
    node.endpoint = spec.bmc.address if spec.bmc else None
    options = dict(node.options or {})
    options.pop("bmc", None)
    options.pop("secureBoot", None)
    if spec.bmc:
        options["bmc"] = spec.bmc.model_dump(by_alias=True)
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
    node = Node(role=BAREMETAL)
    _apply(node, spec, vault)
    return add_node(session, node)


def update_machine(session: Session, vault: Vault, node_id: int, spec: MachineSpec) -> Node:
    """Replace a machine's settings; a password left out is kept."""
    node = get_machine(session, node_id)
    if name_taken(session, spec.name, other_than=node_id):
        raise Conflict(f"name: a node called {spec.name!r} exists already")
    _check_macs(session, spec, other_than=node_id)
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
