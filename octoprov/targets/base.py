"""The interfaces a target driver implements, one per concern, and the errors they raise.

A step calls exactly one method; every method is idempotent (a redelivered step calls it
again and must not create a second machine), and ``validate`` is cheap, so ``POST /tasks``
can call it before accepting work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octoprov.specs import View


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
    def validate(self, config: dict, node) -> None:
        """Raise InvalidRequest naming the field when the task cannot run on this target (cheap:
        ``POST /tasks`` calls it before accepting). ``node`` is the hypervisor node row, if any."""

    @abstractmethod
    def create_machine(self, ctx) -> Machine:
        """Create the machine, or adopt the one this task created before (tagged with its id)."""

    @abstractmethod
    def destroy_machine(self, ctx) -> str:
        """Remove the machine and everything created with it; a no-op when it is gone."""


class PowerInterface(ABC):
    @abstractmethod
    def power_on(self, ctx) -> str: ...

    @abstractmethod
    def power_off(self, ctx) -> str: ...


class BootInterface(ABC):
    @abstractmethod
    def prepare_boot(self, ctx) -> str:
        """Make the machine's next boot go to the network (or the answer ISO)."""

    @abstractmethod
    def cleanup_boot(self, ctx) -> str: ...


class DomainJoinInterface(ABC):
    @abstractmethod
    def provision_offline_join(self, ctx) -> str:
        """Create the computer account and return the djoin blob."""

    @abstractmethod
    def remove_computer_account(self, ctx) -> str: ...


class PostInstallInterface(ABC):
    @abstractmethod
    def run_item(self, ctx, item: dict) -> str:
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
    before_step: Callable[[Any, str], None] | None = None


def as_json(items: list[View]) -> list[dict]:
    return [item.to_json() for item in items]
