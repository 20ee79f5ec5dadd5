"""Power and one-time network boot through a machine's BMC over IPMI 2.0 (RMCP+), with pyghmi, for
servers whose BMC speaks no Redfish.

IPMI gives Octoprov the chassis power (on, off, reset, status) and the device of the machine's next
boot, once or for good. "Power on" sets the next boot, once, to the network, then powers the machine on,
or hard-resets it when it runs already, so it lands in Octoprov's network boot whatever its own boot
order says; once the OS is installed, a persistent boot device makes it boot its hard disk. IPMI has no
Secure Boot control and no virtual media: a task that would need Secure Boot switched off is refused when
it is submitted (``machines.check_secure_boot_control``), and refused here too should the machine have
been registered anew since.

Each call opens one session (pyghmi's ``Command`` logs in when it is made) and logs out at its end.
pyghmi gives up on a BMC that does not answer after a few seconds of its own retries, and a power change
is waited for at most ``POWER_WAIT_S``.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from octoprov.errors import OctoprovError, PermanentError, TargetUnreachable, TransientError
from octoprov.machines import ipmi_endpoint
from octoprov.targets.base import PowerInterface

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext

# pyghmi carries no type information: its objects are Any to a type checker
Command = Any  # pyghmi.ipmi.command.Command

POWER_WAIT_S = 30  # how many times (about a second apart) a power on or off is checked before it counts as failed
# what pyghmi reports when the BMC refuses the user, the password or the privilege a power change needs
_REFUSED = ("unauthorized", "incorrect password", "rakp", "privilege")
# what it reports when the BMC does not answer (an empty error when the login itself got no answer)
_SILENT = ("timeout", "session no longer connected", "session disconnected", "session failed to initialize")


@contextlib.contextmanager
def ipmi_command(ctx: TaskContext) -> Iterator[Command]:
    """A pyghmi command session with the task's machine's BMC, logged out at the end; BMC failures as
    target errors that name the BMC's address, never the password."""
    node = ctx.node
    if node is None:
        raise PermanentError("a machine powered through its BMC needs the machine's BMC settings")
    address = ((node.options or {}).get("bmc") or {}).get("address") or node.endpoint or ""
    host, port = ipmi_endpoint(address)
    pyghmi_errors = importlib.import_module("pyghmi.exceptions")
    command = None
    try:
        # user and password as bytes: pyghmi files a session being set up under them as given and forgets it
        # under their bytes, so with text the next command finds this session, logged out, and fails
        command = importlib.import_module("pyghmi.ipmi.command").Command(
            bmc=host, userid=(node.username or "").encode(), password=str(node.credentials.get("password") or "")
            .encode(), port=port)
        yield command
    except socket.gaierror:
        raise TargetUnreachable(f"the BMC at {address} does not resolve") from None
    except OSError as exc:
        raise TargetUnreachable(f"the BMC at {address} does not answer: {exc.strerror or exc}") from None
    except pyghmi_errors.PyghmiException as exc:
        raise _failure(address, node, exc) from None
    finally:
        if command is not None:
            with contextlib.suppress(Exception):  # a BMC gone silent cannot acknowledge the logout
                command.ipmi_session.logout()


def _failure(address: str, node: NodeInfo, exc: Exception) -> OctoprovError:
    """Refused credentials are permanent; a BMC that does not answer or fails a command, transient."""
    reason = str(exc.args[0]) if exc.args and exc.args[0] else ""
    lowered = reason.lower()
    if any(word in lowered for word in _REFUSED):
        return PermanentError(f"the BMC at {address} refused the credentials of machine {node.name}: {reason}")
    if not reason or any(word in lowered for word in _SILENT):
        return TargetUnreachable(f"the BMC at {address} does not answer (IPMI)")
    return TransientError(f"the BMC at {address} failed: {reason.splitlines()[0][:300]}")


def _power_state(command: Command) -> str:
    """"on" or "off", as the BMC reports the chassis power."""
    return str(command.get_power()["powerstate"])


def _boots_uefi(ctx: TaskContext) -> bool:
    """The machine is known to boot UEFI (registered with Secure Boot, or its firmware said so when it
    reported its hardware): the boot device then carries the EFI flag, without which some BMCs start a
    legacy PXE boot."""
    options = ctx.node.options if ctx.node is not None else {}
    return bool(options.get("secureBoot")) or (options.get("hardware") or {}).get("platform") == "efi"


def power_state(ctx: TaskContext) -> str:
    """The machine's chassis power, "on" or "off"."""
    with ipmi_command(ctx) as command:
        return _power_state(command)


def boot_device(ctx: TaskContext) -> dict[str, Any]:
    """The boot device the BMC holds for the machine's next boot: ``bootdev`` ("network", "hd", "default"...)
    and ``persistent``."""
    with ipmi_command(ctx) as command:
        return dict(command.get_bootdev())


def boot_from_disk(ctx: TaskContext) -> str:
    """A persistent boot device: the hard disk. The firmware's own order may put the network first, and
    not every BMC drops the one-time network boot of ``power_on`` after use (virtualbmc keeps it for
    good). The next task's one-time network boot replaces it."""
    with ipmi_command(ctx) as command:
        current = command.get_bootdev()
        if current.get("bootdev") == "hd" and current.get("persistent"):
            return "The BMC boots the hard disk already (persistent)"
        command.set_bootdev("hd", persist=True, uefiboot=_boots_uefi(ctx))
        return "Boot device set through the BMC (IPMI): hard disk, persistent"


class IpmiPower(PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        """Into a one-time network boot. A task whose installer needs Secure Boot off cannot run here."""
        if ctx.secure_boot_after_install:
            raise PermanentError("the machine enforces Secure Boot and the task's installer is unsigned, but "
                                 "Secure Boot cannot be switched through an IPMI BMC; use an image with a signed "
                                 "kernel, or turn Secure Boot off in the firmware and register the machine "
                                 "without secureBoot")
        with ipmi_command(ctx) as command:
            command.set_bootdev("network", persist=False, uefiboot=_boots_uefi(ctx))
            if _power_state(command) == "on":
                command.set_power("reset")
                return "Restarted through the BMC (IPMI) into a one-time network boot"
            command.set_power("on", wait=POWER_WAIT_S)
            return "Powered on through the BMC (IPMI) into a one-time network boot"

    def power_off(self, ctx: TaskContext) -> str:
        with ipmi_command(ctx) as command:
            if _power_state(command) == "off":
                return "Already off"
            command.set_power("off", wait=POWER_WAIT_S)
            return "Powered off through the BMC (IPMI)"
