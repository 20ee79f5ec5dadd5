"""``hyperv-commands.json`` of a dry run: every command the task's steps would run on an empty host,
in order, with the parameters bound to them, and what a rollback would run. Only the host's default
VHD folder is asked for (when the request names no storagePath); file contents are shown by size."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from octoprov.domainjoin import commands as djoin
from octoprov.domainjoin.djoin import management_endpoint
from octoprov.errors import OctoprovError
from octoprov.targets import tags
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.vms import storage_dirs, vm_plan, vm_spec
from octoprov.winrm.commands import Cmdlet, Pipeline, to_json
from octoprov.winrm.connection import Connect, node_endpoint
from octoprov.winrm.powershell import host_session

if TYPE_CHECKING:
    from octoprov.context import TaskContext

ANSWER_ISO = "<the answer ISO, built when the step runs>"
Step = tuple[str, str, list[Cmdlet | Pipeline]]  # (step, the host it runs on, its commands in order)


def plan_artifacts(ctx: TaskContext) -> tuple[dict[str, str], list[str]]:
    text, notes = planned_commands(ctx)
    return {"hyperv-commands.json": text}, notes


def planned_commands(ctx: TaskContext, connect: Connect | None = None) -> tuple[str, list[str]]:
    """(the JSON text, notes for the plan)."""
    notes = []
    storage_path = vm_spec(ctx).storage_path
    asks_host = not storage_path
    try:
        if not asks_host:
            raise LookupError
        with host_session(node_endpoint(ctx.node), connect) as host:
            vm_path, vhd_dir = storage_dirs(host, storage_path)
    except (LookupError, OctoprovError) as exc:
        vm_path, vhd_dir = storage_dirs(None, storage_path)
        if isinstance(exc, OctoprovError):
            notes.append(f"hyperv-commands.json: {vhd_dir} stands for the host's folder: {exc.message}")
    plan = vm_plan(ctx, vm_path, vhd_dir)
    if ctx.secure_boot_after_install:
        notes.append(f"Secure Boot is off while WinPE installs (wimboot is not signed) and turned on "
                     f"({plan.secure_boot_template}) by enable_secure_boot while the VM is off, before Windows "
                     "first starts")
    elif plan.boot_mode == "pxe" and plan.secure_boot:
        notes.append(f"Secure Boot is on ({plan.secure_boot_template}): the VM network-boots the signed chain (shim, "
                     "Debian's GRUB, the image's signed kernel; docs/secure-boot.md), which the "
                     "MicrosoftUEFICertificateAuthority template trusts and MicrosoftWindows does not")
    name, disks = plan.name, [disk.path for disk in plan.disks]
    node = ctx.node.name if ctx.node else ""
    storage = [commands.read_host_storage()] if asks_host else []
    steps: list[Step] = [("create_vm", node, [*storage, commands.read_vm(name), commands.existing_files(disks),
                                              *commands.create_vm(plan), commands.read_vm(name)])]
    removed = disks + ([plan.answer_iso] if plan.answer_iso else [])
    rollback: list[Step] = [("destroy_machine", node,
                             [commands.read_vm(name), *commands.remove_vm(name, removed, running=True)])]
    domain = ctx.spec.domain
    if domain.join and domain.method == "offline" and ctx.settings.domain_join_backend == "samba":
        notes.append("hyperv-commands.json: the offline-join blob is made on the worker by Samba's net offlinejoin "
                     "(OCTOPROV_DOMAIN_JOIN_BACKEND=samba): no command runs on a Windows host for it")
    elif domain.join and domain.method == "offline":
        try:
            manager = management_endpoint(ctx.settings).label
        except OctoprovError as exc:
            manager = "the management host"
            notes.append(f"hyperv-commands.json: {exc.message}")
        domain_name = domain.name or ""
        steps.append(("prepare_domain_join", manager, [
            djoin.find_computer(name, domain_name),
            djoin.provision_join(domain_name, name, domain.ou, reuse=False),
            djoin.tag_computer(name, domain_name, ctx.task_id)]))
        rollback.append(("remove_computer_account", manager, [
            djoin.find_computer(name, domain_name),
            djoin.remove_computer(f"<distinguished name of {name}>", domain_name)]))
    boot: list[Cmdlet | Pipeline]
    if plan.boot_mode == "pxe":
        boot = [*storage, commands.read_vm(name), *commands.boot_order(plan)]
    else:
        *chunks, check = commands.upload(plan.answer_iso or "", b"")
        boot = [*storage, commands.read_vm(name), *chunks, check, *commands.attach_isos(plan, []),
                *commands.boot_order(plan)]
    steps.append(("register_mac", node, boot))
    power: list[Cmdlet | Pipeline] = [commands.read_vm(name), commands.start_vm(name)]
    if plan.boot_mode == "iso" and plan.generation == 2:
        power.append(commands.press_enter(name))
    steps.append(("power_on", node, power))
    if ctx.secure_boot_after_install:
        steps.append(("enable_secure_boot", node, [
            *storage, commands.read_vm(name), commands.read_vm(name),  # until WinPE has shut the VM down
            *commands.firmware(dataclasses.replace(plan, secure_boot=True)), *commands.disk_first(plan),
            commands.start_vm(name)]))
    steps.append(("boot_from_disk", node, [*storage, commands.read_vm(name), *commands.disk_first(plan)]))
    # the dry run's task gets no id of its own: what derives from the id is shown as what it stands for
    stand_ins = {plan.tag: f"{tags.TAG}<task id>", plan.tag + tags.CREATING: f"{tags.TAG}<task id>"
                 + tags.CREATING}
    if not ctx.mac_address:
        stand_ins[plan.hyperv_mac] = "<MAC derived from the task id>"
    text = json.dumps({"steps": [_step(*step, stand_ins) for step in steps],
                       "rollback": [_step(*step, stand_ins) for step in rollback]}, indent=2, ensure_ascii=False)
    return text + "\n", notes


def _step(step: str, host: str, runs: list[Cmdlet | Pipeline], stand_ins: dict[str, str]) -> dict[str, Any]:
    listed = []
    for command in runs:
        shown = to_json(command)
        for part in shown.get("pipeline", [shown]):
            parameters = part["parameters"]
            for name, value in parameters.items():
                if isinstance(value, str) and value in stand_ins:
                    parameters[name] = stand_ins[value]
            if part.get("script") == "Write-OctoprovFileChunk":
                parameters["Data"] = ANSWER_ISO
        listed.append(shown)
    return {"step": step, "host": host, "commands": listed}
