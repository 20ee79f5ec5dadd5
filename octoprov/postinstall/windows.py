"""Post-install items on an installed Windows machine, over WinRM (PowerShell remoting, pypsrp).

The answer file's first-logon commands turn remoting on (HTTP, port 5985, let in by a firewall
rule) and report the machine's addresses with its first boot. The runner logs on to the first
address as the built-in Administrator, named in the image's language as auto-logon names it, with
the task's ``os.adminPassword``, by NTLM. On plain HTTP pypsrp seals every message with the NTLM
session key, so WinRM's refusal of unencrypted messages stays as Windows sets it.

A package's script or a library ``.ps1`` runs as it is, its parameters bound to its ``param()``
block by name, never written into its text. Its output (objects as PowerShell formats them,
Write-Host and Write-Information, warnings) goes into the task log as it comes. Anything in the
error stream, a terminating error or a non-zero ``$LASTEXITCODE`` afterwards (``exit 3``, or a
failed last program, as ``powershell -Command`` reports it) fails the item; retries as on Linux.
The agent needs no connection: the answer file installed it at first logon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from octoprov.answerfiles.autounattend import administrator_name
from octoprov.answerfiles.inputs import TaskInputs
from octoprov.errors import PermanentError
from octoprov.postinstall.common import (
    agent_skipped,
    library_script,
    package_run,
    reported,
    unreserved,
    with_retries,
)
from octoprov.winrm.commands import Cmdlet, cmdlet, pipeline, script
from octoprov.winrm.connection import Endpoint, endpoint
from octoprov.winrm.powershell import CommandFailed, HostSession, LoginRefused, host_session

if TYPE_CHECKING:
    from octoprov.context import TaskContext

WINRM = {"ssl": False, "port": 5985, "transport": "ntlm"}  # what the first-logon commands enable
FORMATTED = cmdlet("Out-String", Stream=True, Width=160)  # output objects as lines of text, as a console shows them
EXIT_CODE = cmdlet("Get-Variable", Name="LASTEXITCODE", Scope="Global", ValueOnly=True, ErrorAction="Ignore")


def run_item(ctx: TaskContext, item: dict[str, Any]) -> str:
    if item["type"] == "agent":
        return _agent(ctx, item)
    command, repeatable, timeout_s = _work(ctx, item)
    where = _endpoint(ctx)

    def attempt(sink: Callable[[str], None]) -> str | None:
        try:
            with host_session(where, check=ctx.check_cancelled) as session:
                session.stream(pipeline(command, FORMATTED), sink, timeout_s)
                code = _exit_code(session)
        except CommandFailed as exc:
            return f"failed: {exc.text}"
        except LoginRefused:
            raise PermanentError(f"WinRM on {where.label} ({where.server}:{where.port}) refused the login of "
                                 f"{where.username} with the task's os.adminPassword (was the password changed, "
                                 "or the account renamed or disabled?)") from None
        return None if code == 0 else f"exited with code {code}"

    return with_retries(ctx, item, command.name, repeatable, attempt)


def _work(ctx: TaskContext, item: dict[str, Any]) -> tuple[Cmdlet, bool, float]:
    """(the item's script as a command with its parameters, may it run again, its time limit)."""
    kind = item["type"]
    if kind == "script":
        title = f"Script {item['name']}"
        parameters = unreserved(title, item.get("parameters") or {})
        return script(title, library_script(ctx, item), parameters), False, 1800
    if kind == "package":
        package = package_run(ctx, item)
        title = f"Package {package.name}"
        return (script(title, package.script, unreserved(title, package.parameters)), package.idempotent,
                package.timeout_s)
    raise PermanentError(f"post-install item {kind} cannot run on a Windows machine")


def _agent(ctx: TaskContext, item: dict[str, Any]) -> str:
    where = ctx.settings.windows_agent_installer
    if not (ctx.settings.effective_images_dir / where).is_file():
        return agent_skipped(ctx, item, "Windows", where, "agent not installed")
    return f"Installed at first logon by the answer file's commands (images/{where}), before the first-boot report"


def _endpoint(ctx: TaskContext) -> Endpoint:
    """The machine's WinRM: its first reported address, the built-in Administrator (named in the
    image's language, hence the task's inputs) and the request's password (never logged)."""
    address, _options = reported(ctx, "WinRM")
    with ctx.database.session() as session:
        inputs = TaskInputs.from_context(session.connection(), ctx)
    password = ctx.spec.os.admin_password
    if not password:
        raise PermanentError("the task has no os.adminPassword to log on to the machine with")
    return endpoint(address, WINRM, administrator_name(inputs), password, ctx.hostname, f"machine {ctx.hostname}")


def _exit_code(session: HostSession) -> int:
    """``$LASTEXITCODE`` in the runspace the item ran in: 0 when no program ran and nothing exited."""
    values = session.run(EXIT_CODE)
    return values[0] if values and isinstance(values[0], int) and not isinstance(values[0], bool) else 0
