"""KVM hosts through libvirt: what networks and storage pools a host offers, and the machines
Octoprov creates, powers and removes there (domains tagged with their task id).

One concept per module: ``connection`` (opening a node's connection: URIs, SSH keys, libvirt's
errors mapped), ``placement`` (which pool and network a domain goes to), ``domain_xml`` (the domain
a task asks for, as XML), ``cloudimage`` (cloud images' base volumes, overlays and seeds),
``domains`` (a task's own domain, shared by the drivers), ``compute``, ``power``, ``boot`` and
``inventory``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octoprov.targets.base import Target
    from octoprov.targets.libvirt.connection import Connect


def kvm_target(connect: Connect | None = None) -> Target:
    """``connect`` (a libvirt URI → connection) is for tests; workers open their own connections.
    The drivers load here, so that reading :mod:`.connection` (as node validation does) loads none."""
    from octoprov.domainjoin import domain_join_backend
    from octoprov.postinstall import MachinePostInstall
    from octoprov.targets.base import Target
    from octoprov.targets.libvirt.boot import LibvirtBoot
    from octoprov.targets.libvirt.compute import LibvirtCompute
    from octoprov.targets.libvirt.power import LibvirtPower

    return Target(LibvirtCompute(connect), LibvirtPower(connect), LibvirtBoot(connect), domain_join_backend(),
                  MachinePostInstall())
