"""Hyper-V hosts over WinRM: PowerShell remoting through pypsrp from Linux workers, so the host
needs nothing beyond WinRM enabled.

One concept per module: ``connection`` (the WSMan settings of a node or the management host),
``powershell`` (running commands through pypsrp's runspace pool, errors mapped), ``commands``
(the cmdlets as data), ``vms`` (a task's VM on its host), ``compute``, ``power``, ``boot`` and
``answeriso`` (ISO mode), ``domainjoin`` (offline join with djoin.exe), ``inventory`` and
``dryrun`` (the commands a task would run).
"""

from __future__ import annotations

from octoprov.postinstall import MachinePostInstall
from octoprov.targets.base import Target
from octoprov.targets.hyperv.connection import Connect


def hyperv_target(connect: Connect | None = None) -> Target:
    """``connect`` (an endpoint → pypsrp WSMan) is for tests; workers open their own connections."""
    from octoprov.targets.hyperv.boot import HyperVBoot
    from octoprov.targets.hyperv.compute import HyperVCompute
    from octoprov.targets.hyperv.domainjoin import DjoinDomainJoin
    from octoprov.targets.hyperv.power import HyperVPower

    return Target(HyperVCompute(connect), HyperVPower(connect), HyperVBoot(connect), DjoinDomainJoin(connect),
                  MachinePostInstall())
