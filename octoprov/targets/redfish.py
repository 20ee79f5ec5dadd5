"""Power and one-time network boot through a machine's BMC, over Redfish with the sushy client.

The task's machine is the Redfish system named in the machine's BMC settings, or else the one
whose network card has the machine's MAC (a BMC may manage several systems, a chassis of blades).
"Power on" first sets the next boot, once, to PXE, so the machine lands in Octoprov's network boot
whatever its persistent boot order says, and restarts it if it was already running.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.targets.base import PowerInterface

if TYPE_CHECKING:
    from octoprov.context import TaskContext

# sushy carries no type information (no py.typed): its objects are Any to a type checker
System = Any  # sushy.resources.system.system.System


def _sushy() -> ModuleType:
    """sushy, loaded only where a BMC is used."""
    return importlib.import_module("sushy")


@contextlib.contextmanager
def redfish_system(ctx: TaskContext) -> Iterator[System]:
    """The sushy system object of the task's machine; BMC failures as target errors."""
    sushy = _sushy()
    node = ctx.node
    if node is None:
        raise PermanentError("a machine powered through its BMC needs the machine's BMC settings")
    bmc = (node.options or {}).get("bmc") or {}
    address = bmc.get("address") or node.endpoint
    try:
        root = sushy.Sushy(f"{address}/redfish/v1", username=node.username, password=node.credentials.get("password"),
                           verify=bool(bmc.get("verifyCertificate", True)))
        macs = set(node.mac_addresses or ([ctx.mac_address] if ctx.mac_address else []))
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


class RedfishPower(PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        sushy = _sushy()
        with redfish_system(ctx) as system:
            system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
            if system.power_state == sushy.POWER_STATE_ON:
                system.reset_system(sushy.RESET_FORCE_RESTART)
                return "Restarted through the BMC into a one-time network boot"
            system.reset_system(sushy.RESET_ON)
            return "Powered on through the BMC into a one-time network boot"

    def power_off(self, ctx: TaskContext) -> str:
        sushy = _sushy()
        with redfish_system(ctx) as system:
            if system.power_state == sushy.POWER_STATE_OFF:
                return "Already off"
            system.reset_system(sushy.RESET_FORCE_OFF)
            return "Powered off through the BMC"
