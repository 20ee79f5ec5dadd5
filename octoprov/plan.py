"""Dry runs: what a task would do and produce, without creating anything.

The request goes through exactly the validation of a real task (the same code, in a
database session that is rolled back), then every artifact the task would produce is
rendered. Later capabilities add their artifacts here (boot scripts, answer files,
domain XML, Hyper-V commands); secrets appear only where the artifact itself needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from octoprov import deploykey, tasks
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.models import Image
from octoprov.netboot.bootconfig import install_answer
from octoprov.settings import Settings


@dataclass(frozen=True)
class Plan:
    task: dict
    artifacts: dict[str, str]

    def to_json(self) -> dict:
        return {"valid": True, "task": self.task, "artifacts": self.artifacts}


def plan_task(settings: Settings, database: Database, vault: Vault, body: object) -> Plan:
    with database.scratch_session() as session:
        task = tasks.create_task(session, vault, body, check_on_host=settings.check_on_host)
        session.flush()
        view = tasks.TaskView.of(task).to_json()
        image = session.get(Image, (task.config or {}).get("os", {}).get("imageId"))
        boot = install_answer(settings, task, image, vault.decrypt(task.callback_token_encrypted),
                              vault.decrypt(task.files_token_encrypted))
        target_artifacts, notes = _target_artifacts(session, settings, database, vault, task)
        answer_files, answer_notes = _answer_files(session, settings, vault, task)
        notes = [*notes, *answer_notes]
    view.update(id=None, createdAt=None)
    actions = [{"position": step["position"], "step": step["name"], "title": step["title"]} for step in view["steps"]]
    artifacts = {"plan.json": json.dumps({"targetType": view["targetType"], "hostname": view["hostname"],
                                          "actions": actions, "config": view["config"], "notes": notes},
                                         indent=2) + "\n",
                 "boot.ipxe": boot.script, **target_artifacts, **answer_files}
    return Plan(view, artifacts)


DJOIN_PLACEHOLDER = "OFFLINE-JOIN-BLOB-MADE-BY-THE-prepare_domain_join-STEP"


def _answer_files(session, settings: Settings, vault: Vault, task) -> tuple[dict, list]:
    """The files the machine would fetch from its file URL (Autounattend, startnet.cmd, winpeshl.ini;
    kickstart.cfg). What exists only once the task runs stands in as a placeholder, and the notes
    say so: a VM's MAC (a static address is bound to it) and the offline-join blob."""
    from dataclasses import replace

    from octoprov.answerfiles.files import render_files
    from octoprov.answerfiles.inputs import TaskInputs

    inputs = TaskInputs.load(session, settings, vault, task)
    changes, notes = {}, []
    if inputs.mac_address is None and (inputs.config.get("network") or {}).get("mode") == "static":
        changes["mac_address"] = PLACEHOLDER_MAC
        notes.append(f"answer files: {PLACEHOLDER_MAC} stands for the MAC the machine gets when it is created")
    domain = inputs.config.get("domain") or {}
    if domain.get("join") and domain.get("method", "offline") == "offline" and not inputs.domain_join_blob:
        changes["domain_join_blob"] = DJOIN_PLACEHOLDER
        notes.append("autounattend.xml: the offline-join blob is made by the prepare_domain_join step")
    rendered = render_files(replace(inputs, **changes), settings)
    if inputs.target_type == "baremetal" and not inputs.hardware.get("platform"):
        notes.append("answer files: UEFI assumed until the machine reports its firmware when it boots")
    if not rendered.files and not rendered.problems:
        return {}, []  # this task's machine fetches no answer files
    return rendered.files, [*notes, *(f"{name} not written: {problem}" for name, problem in rendered.problems.items())]


def _target_artifacts(session, settings: Settings, database: Database, vault: Vault, task) -> tuple[dict, list]:
    """What the target itself would be given (a KVM domain's XML; a cloud image's seed files). Asking
    the host which pool and network it would use is the only contact a dry run makes; if the host
    does not answer, the plan says so instead of guessing."""
    if task.target_type == "hyperv":
        from octoprov.context import load_context
        from octoprov.targets.hyperv.dryrun import planned_commands

        text, notes = planned_commands(load_context(session, task.id, settings, database, vault))
        return {"hyperv-commands.json": text}, notes
    if task.target_type != "kvm":
        return {}, []
    from octoprov.context import load_context
    from octoprov.errors import OctoprovError
    from octoprov.targets.kvm import LibvirtCompute

    ctx = load_context(session, task.id, settings, database, vault)
    seed, notes = _cloud_init_seed(ctx, task, vault) if ctx.cloud_image else ({}, [])
    try:
        return {"domain.xml": LibvirtCompute().planned_domain_xml(ctx), **seed}, notes
    except OctoprovError as exc:
        return seed, [f"domain.xml not written: {exc.message}", *notes]


PLACEHOLDER_MAC = "52:54:00:00:00:00"


def _cloud_init_seed(ctx, task, vault: Vault) -> tuple[dict, list]:
    """A cloud image's seed files, as the machine's seed ISO would hold them. Without a MAC in the
    request, libvirt picks one when it defines the domain: a placeholder stands for it here."""
    from octoprov.cloudinit import seed_files

    files = seed_files(task_id=task.id, hostname=task.hostname, config=task.config,
                       mac_address=task.mac_address or PLACEHOLDER_MAC, callback_url=ctx.callback_url,
                       callback_token=vault.decrypt(task.callback_token_encrypted),
                       secrets=vault.decrypt_json(task.secrets_encrypted) or {},
                       deploy_key=deploykey.public_key(ctx.settings))
    notes = [] if task.mac_address else [f"network-config: {PLACEHOLDER_MAC} stands for the MAC libvirt gives "
                                         f"the domain when it is defined"]
    return files, notes
