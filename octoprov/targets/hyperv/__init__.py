"""Hyper-V hosts over WinRM: PowerShell remoting through pypsrp from Linux workers, so the host
needs nothing beyond WinRM enabled.

The WinRM plumbing (connections, the PowerShell runner) is :mod:`octoprov.winrm`, the offline
domain join :mod:`octoprov.domainjoin`: both serve other targets too. Here, one concept per
module: ``commands`` (the cmdlets as data, with the fixed scripts of ``scripts/``), ``options``
(a node's boot mode), ``vms`` (a task's VM on its host), ``compute``, ``power``, ``boot`` and
``inventory`` and ``dryrun`` (the commands a task would run).
"""

from __future__ import annotations

from octoprov.domainjoin import domain_join_backend
from octoprov.postinstall import MachinePostInstall
from octoprov.targets.base import Target
from octoprov.winrm.connection import Connect


def hyperv_target(connect: Connect | None = None) -> Target:
    """``connect`` (an endpoint → pypsrp WSMan) is for tests; workers open their own connections."""
    from octoprov.targets.hyperv.boot import HyperVBoot
    from octoprov.targets.hyperv.compute import HyperVCompute
    from octoprov.targets.hyperv.power import HyperVPower

    return Target(HyperVCompute(connect), HyperVPower(connect), HyperVBoot(connect),
                  domain_join_backend(connect=connect), MachinePostInstall())
