"""The interfaces a target driver implements, one per concern.

A step calls exactly one method; every method is idempotent (a redelivered step calls it
again and must not create a second machine), and ``validate`` is cheap, so ``POST /tasks``
can call it before accepting work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov.domainjoin.base import DomainJoinInterface
from octoprov.errors import PermanentError
from octoprov.specs import View

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec

PLANNED_MAC = "52:54:00:00:00:00"  # in a dry run, stands for the MAC a machine gets when it is created


@dataclass(frozen=True)
class Machine:
    """What the compute driver created: its own id of the machine and the NIC's MAC."""

    ref: str
    mac_address: str
    detail: str


class NetworkView(View):
    name: str
    type: str  # libvirt-network | bridge | vswitch
    active: bool
    bridge: str | None = None
    vlan_capable: bool = False


class StorageView(View):
    name: str
    type: str
    active: bool
    path: str | None = None
    capacity_bytes: int | None = None
    free_bytes: int | None = None


class InventoryInterface(ABC):
    """What a host offers to put machines on: networks to attach to, storage to put disks in."""

    @abstractmethod
    def networks(self) -> list[NetworkView]: ...

    @abstractmethod
    def storage(self) -> list[StorageView]: ...


class ComputeInterface(ABC):
    @abstractmethod
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        """Raise InvalidRequest naming the field when the task cannot run on this target (cheap:
        ``POST /tasks`` calls it before accepting). ``node`` is the hypervisor node, if any."""

    @abstractmethod
    def create_machine(self, ctx: TaskContext) -> Machine:
        """Create the machine, or adopt the one this task created before (tagged with its id)."""

    @abstractmethod
    def destroy_machine(self, ctx: TaskContext) -> str:
        """Remove the machine and everything created with it; a no-op when it is gone."""


class PowerInterface(ABC):
    @abstractmethod
    def power_on(self, ctx: TaskContext) -> str: ...

    @abstractmethod
    def power_off(self, ctx: TaskContext) -> str: ...


class BootInterface(ABC):
    @abstractmethod
    def prepare_boot(self, ctx: TaskContext) -> str:
        """Make the machine's next boot go to the network (or the answer ISO)."""

    @abstractmethod
    def cleanup_boot(self, ctx: TaskContext) -> str: ...

    def boot_from_disk(self, ctx: TaskContext) -> str:
        """Put the machine's OS disk first in its boot order, once the OS is installed: a machine left
        network-first waits out the firmware's network-boot timeouts at every reboot, because the PXE
        services answer only machines being installed. Targets whose declaration says ``boot_order``
        implement it; it must hold at the machine's next reboot without Octoprov."""
        raise PermanentError(f"the {type(self).__name__} driver does not set a boot order")

    def enable_secure_boot(self, ctx: TaskContext) -> str:
        """Turn Secure Boot on for a machine installed with it off, once the installer has powered it
        off after reporting the OS installed, then start it: the installed OS first boots with it on.
        Targets whose declaration says ``secure_boot_after_install`` implement it."""
        raise PermanentError(f"the {type(self).__name__} driver does not turn Secure Boot on")


class PostInstallInterface(ABC):
    @abstractmethod
    def run_item(self, ctx: TaskContext, item: dict[str, Any]) -> str:
        """Run one post-install item (agent, package, script) on the installed machine."""


@dataclass(frozen=True)
class Target:
    """The drivers one kind of target is made of. ``before_step`` is a hook run before every
    work step (the fake target injects its delays and failures there; real targets have none)."""

    compute: ComputeInterface
    power: PowerInterface
    boot: BootInterface
    domain: DomainJoinInterface
    post_install: PostInstallInterface
    before_step: Callable[[TaskContext, str], None] | None = None


def as_json(items: list[View]) -> list[dict[str, Any]]:
    return [item.to_json() for item in items]
