"""Post-install items on an installed Linux machine, over SSH with Octoprov's deploy key.

Where to log on comes from the machine's own authenticated report (its first address, its SSH
port and host keys, see :mod:`octoprov.results`); as whom from the request (``os.adminUsername``,
else root). Each item's output goes to the task log as it comes; a failed item that may be
repeated safely (the agent, a package marked idempotent) is tried again with a growing pause, as
many times as ``postInstall.retries`` says, and otherwise fails its step with its last output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov import deploykey, pipeline
from octoprov.errors import PermanentError
from octoprov.models import Task
from octoprov.postinstall import shell
from octoprov.postinstall.common import (
    agent_skipped,
    library_script,
    package_run,
    reported,
    unreserved,
    with_retries,
)
from octoprov.postinstall.ssh import Connection, SshTarget, connect, fingerprint, run_script, upload
from octoprov.results import result_node

if TYPE_CHECKING:
    from octoprov.context import TaskContext


@dataclass(frozen=True)
class Work:
    """One item as the machine runs it."""

    title: str
    script: str
    repeatable: bool
    timeout_s: float = 1800
    upload: tuple[bytes, str] | None = None  # an installer (data, file name in the account's home) sent first,
    # then run with ``script`` as its arguments


def run_item(ctx: TaskContext, item: dict[str, Any]) -> str:
    target, password = _target(ctx)
    work = _work(ctx, item)
    if work is None:
        return agent_skipped(ctx, item, "Linux", ctx.settings.linux_agent_installer, "agent not installed")

    def attempt(sink: Callable[[str], None]) -> str | None:
        with connect(target, deploykey.private_key_text(ctx.settings), password) as connection:
            _pin_on_first_use(ctx, connection, target)
            status = _run(connection, work, target.username != "root", sink, ctx.check_cancelled)
        return None if status == 0 else f"exited with status {status}"

    return with_retries(ctx, item, work.title, work.repeatable, attempt)


def _run(connection: Connection, work: Work, sudo: bool, sink: Callable[[str], None],
         check_cancelled: Callable[[], None]) -> int:
    script = work.script
    if work.upload is not None:
        data, name = work.upload
        script = shell.installer_script(upload(connection, data, name), script)
    return run_script(connection, script, sudo=sudo, timeout_s=work.timeout_s, on_line=sink,
                      check_cancelled=check_cancelled)


def _target(ctx: TaskContext) -> tuple[SshTarget, str | None]:
    address, options = reported(ctx, "SSH")
    ssh = options.get("ssh") or {}
    username = ctx.spec.os.admin_username or "root"
    password = ctx.spec.os.admin_password  # the key first; the account's password if the key is refused
    return SshTarget(address, int(ssh.get("port", 22)), username, tuple(ssh.get("hostKeys") or ())), password


def _pin_on_first_use(ctx: TaskContext, connection: Connection, target: SshTarget) -> None:
    if not connection.first_use:
        return
    with ctx.database.session() as session:
        node = result_node(session, session.get_one(Task, ctx.task_id))
        node.options = {**(node.options or {}), "ssh": {"port": target.port, "hostKeys": [connection.host_key]}}
        pipeline.log(session, ctx.task_id, f"{target.host}:{target.port} reported no host key; trusted on first "
                     f"use and pinned: {fingerprint(connection.host_key)}", level="warn", step="post-install")


def _work(ctx: TaskContext, item: dict[str, Any]) -> Work | None:
    kind = item["type"]
    if kind == "agent":
        installer = ctx.settings.effective_images_dir / ctx.settings.linux_agent_installer
        if not installer.is_file():
            return None
        name = f".octoprov-agent-{ctx.task_id}.sh"
        return Work("Agent installer", ctx.settings.linux_agent_args,
                    repeatable=True, upload=(installer.read_bytes(), name))
    if kind == "script":
        title = f"Script {item['name']}"
        script = shell.item_script(library_script(ctx, item), unreserved(title, item.get("parameters") or {}))
        return Work(title, script, repeatable=False)
    if kind == "package":
        package = package_run(ctx, item)
        title = f"Package {package.name}"
        return Work(title, shell.item_script(package.script, unreserved(title, package.parameters)),
                    repeatable=package.idempotent, timeout_s=package.timeout_s)
    raise PermanentError(f"post-install item {kind} cannot run on a Linux machine")
