"""Offline domain join, whatever the machine runs on: one interface (``base``), backends behind it
(``djoin``: djoin.exe on a Windows management host over WinRM), and the one function that picks
the backend, so every target (Hyper-V, KVM, bare metal) joins machines the same way.

Nothing here knows about targets: they depend on this package, never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.domainjoin.base import DomainJoinInterface

if TYPE_CHECKING:
    from octoprov.settings import Settings
    from octoprov.winrm.connection import Connect


def domain_join_backend(settings: Settings | None = None, connect: Connect | None = None) -> DomainJoinInterface:
    """The backend the settings choose; today there is one, djoin on the management host, which reads
    the host from the task's settings when it runs (targets are built before a task's settings are at
    hand, so they pass none). ``connect`` (an endpoint → pypsrp WSMan) is for tests."""
    from octoprov.domainjoin.djoin import DjoinDomainJoin

    return DjoinDomainJoin(connect)


__all__ = ["DomainJoinInterface", "domain_join_backend"]
