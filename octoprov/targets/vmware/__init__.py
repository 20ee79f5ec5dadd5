"""VMware vSphere (vCenter or a standalone ESXi host) through pyVmomi, the vSphere SDK's Python binding.

One concept per module: ``options`` (a node's registration), ``connection`` (sessions, certificate
trust and pinning, pyVmomi's failures mapped), ``placement`` (datacenter, cluster or host, datastore and
port group), ``vmspec`` (the VM a task asks for, as the ConfigSpec sent), ``vms`` (a task's own VM,
shared by the drivers), ``compute``, ``power``, ``boot``, ``inventory`` and ``dryrun``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octoprov.targets.base import Target
    from octoprov.targets.vmware.connection import Connect


def vmware_target(connect: Connect | None = None) -> Target:
    """``connect`` (a node → a logged-in service instance) is for tests; workers open their own sessions.
    The drivers load here, so that reading :mod:`.options` (as node validation does) loads no pyVmomi."""
    from octoprov.domainjoin import domain_join_backend
    from octoprov.postinstall import MachinePostInstall
    from octoprov.targets.base import Target
    from octoprov.targets.vmware.boot import VsphereBoot
    from octoprov.targets.vmware.compute import VsphereCompute
    from octoprov.targets.vmware.power import VspherePower

    return Target(VsphereCompute(connect), VspherePower(connect), VsphereBoot(connect), domain_join_backend(),
                  MachinePostInstall())
