"""The PowerShell the djoin backend runs on the management host, as data: find, provision (djoin.exe
/provision), tag and remove a computer account. Values are bound parameters, never script text;
running djoin.exe and shaping an account as JSON are the fixed scripts of ``scripts/``."""

from __future__ import annotations

from octoprov.winrm.commands import Cmdlet, cmdlet, fixed
from octoprov.winrm.scriptfiles import scripts

PACKAGE = "octoprov.domainjoin"
SCRIPTS = scripts(PACKAGE)  # the fixed scripts of scripts/, by name

TAG = "octoprov-task:"  # an account's Description: the task that created it (as a Hyper-V VM's Notes)


def find_computer(name: str, domain: str) -> Cmdlet:
    return fixed(PACKAGE, "Find-OctoprovComputerAccount", Name=name, Server=domain)


def provision_join(domain: str, machine: str, ou: str | None, reuse: bool) -> Cmdlet:
    """djoin.exe /provision; ``reuse`` only for an account this task created before (its tag)."""
    return fixed(PACKAGE, "Invoke-OctoprovDjoin", Domain=domain, Machine=machine, MachineOU=ou, Reuse=reuse)


def tag_computer(name: str, domain: str, task_id: int) -> Cmdlet:
    return cmdlet("Set-ADComputer", Identity=name, Server=domain, Description=f"{TAG}{task_id}")


def remove_computer(distinguished_name: str, domain: str) -> Cmdlet:
    """A tree delete: Remove-ADComputer refuses an account that gained child objects (BitLocker recovery
    information, service connection points), which would leave it behind after a rollback."""
    return cmdlet("Remove-ADObject", Identity=distinguished_name, Server=domain, Recursive=True, Confirm=False)
