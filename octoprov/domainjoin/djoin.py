"""Offline domain join with djoin.exe: the management host (``OCTOPROV_DJOIN_HOST``), reached over
WinRM, creates the computer account with ``djoin.exe /provision`` and hands back the blob the answer
file carries, so no domain credentials travel to the machine.

The account is tagged with the task id (its Description) right after djoin made it. A repeated
step re-provisions only an account carrying this task's tag (``/reuse``); any other account of
that name is refused, and rollback removes only a tagged account: a task never takes over or
deletes a computer it did not create.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from octoprov.domainjoin import commands
from octoprov.domainjoin.base import DomainJoinInterface, domain_name
from octoprov.errors import PermanentError
from octoprov.logs import redactor
from octoprov.settings import Settings
from octoprov.winrm.connection import Connect, Endpoint, endpoint
from octoprov.winrm.powershell import HostSession, host_session

if TYPE_CHECKING:
    from octoprov.context import TaskContext


def management_endpoint(settings: Settings) -> Endpoint:
    if not settings.djoin_host:
        raise PermanentError("offline domain join needs a management host: set OCTOPROV_DJOIN_HOST (a domain "
                             "controller or a host with RSAT), OCTOPROV_DJOIN_USERNAME and OCTOPROV_DJOIN_PASSWORD")
    winrm = {"transport": settings.djoin_transport, "validateCertificate": settings.djoin_validate_certificate}
    return endpoint(settings.djoin_host, winrm, settings.djoin_username, settings.djoin_password,
                    f"management host {settings.djoin_host}", "OCTOPROV_DJOIN_HOST")


def clean_blob(text: str) -> str:
    """djoin writes its save file as UTF-16 with a byte order mark and a trailing NUL; the blob is
    the base64 text inside."""
    return "".join(text.replace("\ufeff", "").replace("\x00", "").split())


class DjoinDomainJoin(DomainJoinInterface):
    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect

    @contextlib.contextmanager
    def _management_host(self, ctx: TaskContext, *, cancellable: bool = True) -> Iterator[HostSession]:
        check = ctx.check_cancelled if cancellable else None  # a cancelled task's account is still removed
        with host_session(management_endpoint(ctx.settings), self._connect, check) as host:
            yield host

    def provision_offline_join(self, ctx: TaskContext) -> str:
        domain = domain_name(ctx)
        name, tag = ctx.hostname, f"{commands.TAG}{ctx.task_id}"
        with self._management_host(ctx) as host:
            account = _account(host, name, domain)
            if account is not None and account.get("Description") != tag:
                raise PermanentError(f"a computer account {name} already exists in {domain} "
                                     f"({account.get('DistinguishedName')}) and was not created by this task: "
                                     "remove it or choose another hostname")
            output = host.run(commands.provision_join(domain, name, ctx.spec.domain.ou, account is not None))
            blob = clean_blob("".join(str(line) for line in output))
            redactor.register(blob)
            if not blob:
                raise PermanentError(f"djoin.exe on {host.where.label} returned no offline join blob")
            host.run(commands.tag_computer(name, domain, ctx.task_id))
        return blob

    def remove_computer_account(self, ctx: TaskContext) -> str:
        domain = domain_name(ctx)
        with self._management_host(ctx, cancellable=False) as host:
            account = _account(host, ctx.hostname, domain)
            if account is None:
                return f"no computer account {ctx.hostname} in {domain}"
            if account.get("Description") != f"{commands.TAG}{ctx.task_id}":
                return f"computer account {ctx.hostname} kept: this task did not create it"
            host.run(commands.remove_computer(account["DistinguishedName"], domain))
        return f"Removed computer account {ctx.hostname} from {domain}"


def _account(host: HostSession, name: str, domain: str) -> dict[str, Any] | None:
    found = host.json(commands.find_computer(name, domain))
    return found[0] if found else None
