"""Dry runs: what a task would do and produce, without creating anything.

The request goes through exactly the validation of a real task (the same code, in a
database session that is rolled back), then every artifact the task would produce is
rendered. Later capabilities add their artifacts here (boot scripts, answer files,
domain XML, Hyper-V commands); secrets appear only where the artifact itself needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from octoprov import tasks
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
        task = tasks.create_task(session, vault, body)
        session.flush()
        view = tasks.TaskView.of(task).to_json()
        image = session.get(Image, (task.config or {}).get("os", {}).get("imageId"))
        boot = install_answer(settings, task, image, vault.decrypt(task.callback_token_encrypted),
                              vault.decrypt(task.files_token_encrypted))
        target_artifacts, notes = _target_artifacts(session, settings, database, vault, task)
    view.update(id=None, createdAt=None)
    actions = [{"position": step["position"], "step": step["name"], "title": step["title"]} for step in view["steps"]]
    artifacts = {"plan.json": json.dumps({"targetType": view["targetType"], "hostname": view["hostname"],
                                          "actions": actions, "config": view["config"], "notes": notes},
                                         indent=2) + "\n",
                 "boot.ipxe": boot.script, **target_artifacts}
    return Plan(view, artifacts)


def _target_artifacts(session, settings: Settings, database: Database, vault: Vault, task) -> tuple[dict, list]:
    """What the target itself would be given (a KVM domain's XML). Asking the host which pool and
    network it would use is the only contact a dry run makes; if the host does not answer, the
    plan says so instead of guessing."""
    if task.target_type != "kvm":
        return {}, []
    from octoprov.context import load_context
    from octoprov.errors import OctoprovError
    from octoprov.targets.kvm import LibvirtCompute

    ctx = load_context(session, task.id, settings, database, vault)
    try:
        return {"domain.xml": LibvirtCompute().planned_domain_xml(ctx)}, []
    except OctoprovError as exc:
        return {}, [f"domain.xml not written: {exc.message}"]
