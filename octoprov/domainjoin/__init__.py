"""Domain join, whatever the machine runs on: one interface (``base``), backends behind it (``djoin``:
djoin.exe on a Windows management host over WinRM; ``samba``: Samba's net offlinejoin on the worker,
computer accounts over LDAPS), the directory itself (``directory``: LDAPS) and the checks of a request's
join before it is accepted (``checks``), and the one function that picks the backend, so every target
(Hyper-V, KVM, bare metal) joins machines the same way.

Nothing here knows about targets: they depend on this package, never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.domainjoin.base import DomainJoinInterface

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.settings import Settings
    from octoprov.winrm.connection import Connect


def backend_for(settings: Settings, connect: Connect | None = None) -> DomainJoinInterface:
    """The backend ``OCTOPROV_DOMAIN_JOIN_BACKEND`` names. ``connect`` (an endpoint → pypsrp WSMan) is
    for tests of the djoin backend."""
    if settings.domain_join_backend == "samba":
        from octoprov.domainjoin.samba import SambaDomainJoin

        return SambaDomainJoin()
    from octoprov.domainjoin.djoin import DjoinDomainJoin

    return DjoinDomainJoin(connect)


class SettingsChosen(DomainJoinInterface):
    """The backend the task's settings name, chosen at each call: targets are built before a task's
    settings are at hand, so they hold this and the task's context decides."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect

    def backend(self, settings: Settings) -> DomainJoinInterface:
        return backend_for(settings, self._connect)

    def provision_offline_join(self, ctx: TaskContext) -> str:
        return self.backend(ctx.settings).provision_offline_join(ctx)

    def remove_computer_account(self, ctx: TaskContext) -> str:
        return self.backend(ctx.settings).remove_computer_account(ctx)


def domain_join_backend(settings: Settings | None = None, connect: Connect | None = None) -> DomainJoinInterface:
    """The backend for ``settings``; without them (a target being built) the one each task's settings
    choose when it runs."""
    return backend_for(settings, connect) if settings is not None else SettingsChosen(connect)


__all__ = ["DomainJoinInterface", "domain_join_backend"]
