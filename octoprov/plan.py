"""Dry runs: what a task would do and produce, without creating anything.

The request goes through exactly the validation of a real task (the same code, in a
database session that is rolled back), then every artifact the task would produce is
rendered. Later capabilities add their artifacts here (boot scripts, answer files,
domain XML, Hyper-V commands); secrets appear only where the artifact itself needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from octoprov import tasks
from octoprov.answerfiles.files import render_files
from octoprov.answerfiles.inputs import TaskInputs
from octoprov.context import TaskContext, load_context
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.models import Image
from octoprov.netboot.bootconfig import install_answer
from octoprov.settings import Settings
from octoprov.targets import registry
from octoprov.targets.base import PLANNED_MAC


@dataclass(frozen=True)
class Plan:
    task: dict[str, Any]
    artifacts: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"valid": True, "task": self.task, "artifacts": self.artifacts}


def plan_task(settings: Settings, database: Database, vault: Vault, body: object) -> Plan:
    with database.scratch_session() as session:
        task = tasks.create_task(session, vault, body, check_on_host=settings.check_on_host, settings=settings)
        session.flush()
        view = tasks.TaskView.of(task).to_json()
        image = session.get(Image, (task.config or {}).get("os", {}).get("imageId"))
        # create_task sets both tokens
        assert task.callback_token_encrypted is not None and task.files_token_encrypted is not None
        boot = install_answer(settings, task, image, vault.decrypt(task.callback_token_encrypted),
                              vault.decrypt(task.files_token_encrypted))
        ctx = load_context(session, task.id, settings, database, vault)
        target_artifacts, notes = registry.get(task.target_type).plan(ctx)
        answer_files, answer_notes = _answer_files(session, ctx)
        notes = [*notes, *answer_notes]
    view.update(id=None, createdAt=None)
    actions = [{"position": step["position"], "step": step["name"], "title": step["title"]} for step in view["steps"]]
    artifacts = {"plan.json": json.dumps({"targetType": view["targetType"], "hostname": view["hostname"],
                                          "actions": actions, "config": view["config"], "notes": notes},
                                         indent=2) + "\n",
                 "boot.ipxe": boot.script, **target_artifacts, **answer_files}
    return Plan(view, artifacts)


DJOIN_PLACEHOLDER = "OFFLINE-JOIN-BLOB-MADE-BY-THE-prepare_domain_join-STEP"


def _answer_files(session: Session, ctx: TaskContext) -> tuple[dict[str, str], list[str]]:
    """The files the machine would fetch from its file URL (Autounattend, startnet.cmd, winpeshl.ini;
    kickstart.cfg). What exists only once the task runs stands in as a placeholder, and the notes
    say so: a VM's MAC (a static address is bound to it) and the offline-join blob."""
    inputs = TaskInputs.from_context(session.connection(), ctx)
    mac_address, blob, notes = inputs.mac_address, inputs.domain_join_blob, []
    if mac_address is None and inputs.spec.network.mode == "static":
        mac_address = PLANNED_MAC
        notes.append(f"answer files: {PLANNED_MAC} stands for the MAC the machine gets when it is created")
    domain = inputs.spec.domain
    if domain.join and domain.method == "offline" and not blob:
        blob = DJOIN_PLACEHOLDER
        notes.append("autounattend.xml: the offline-join blob is made by the prepare_domain_join step")
    rendered = render_files(replace(inputs, mac_address=mac_address, domain_join_blob=blob), ctx.settings)
    if not inputs.target.makes_vms and not inputs.hardware.get("platform"):
        notes.append("answer files: UEFI assumed until the machine reports its firmware when it boots")
    if not rendered.files and not rendered.problems:
        return {}, []  # this task's machine fetches no answer files
    return rendered.files, [*notes, *(f"{name} not written: {problem}" for name, problem in rendered.problems.items())]
