"""The interfaces a target driver implements, one per concern."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel

from octoprov.errors import OctoprovError
from octoprov.specs import View


class NotAvailable(OctoprovError):
    """The node's kind has no implementation of this interface (yet)."""

    status = 501


class TargetUnreachable(OctoprovError):
    """The host did not answer or refused the connection; worth retrying later."""

    status = 502


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


def as_json(items: list[BaseModel]) -> list[dict]:
    return [item.model_dump(mode="json", by_alias=True) for item in items]
