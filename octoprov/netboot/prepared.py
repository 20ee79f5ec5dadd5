"""The central side of a site's edge: the boot answers it prepares ahead, and the boots it reports back.

An edge cannot read the database (it sits at a branch, behind the WAN), so it asks the centre for the
rendered answers of every active task of its site whose MAC is known, and answers its machines from the last
copy, also while the WAN is down. The answers point the machine at the edge for boot files (it caches them)
and at the centre for the task's own files and callbacks. What the edge served comes back as boot lines on
the tasks' logs, as the central boot path writes them (``record_boots``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.crypto import Vault
from octoprov.models import Site, Task, utcnow
from octoprov.netboot.bootconfig import answer_for, record_boots
from octoprov.netboot.chain import chain_for
from octoprov.settings import Settings
from octoprov.specs import Spec
from octoprov.validation.macs import canonical_mac

MAX_SERVED = 1000  # boot lines in one report: an edge sends what it kept in batches


def prepared_answers(session: Session, settings: Settings, vault: Vault, site: Site) -> dict[str, Any]:
    """Every answer the site's edge may have to give, by MAC: the script (iPXE), the document (JSON clients),
    the GRUB configuration, the action, the task and the boot chain ProxyDHCP hands out. Carries callback
    tokens: only for callers allowed to read them."""
    tasks = session.scalars(select(Task).where(Task.site_id == site.id, Task.status.in_(states.ACTIVE),
                                               Task.mac_address.is_not(None)).order_by(Task.id))
    answers: dict[str, dict[str, Any]] = {}
    for task in tasks:
        assert task.mac_address is not None  # selected so
        answer = answer_for(session, settings, vault, task.mac_address, task, {}, boot_url=site.boot_url)
        answers[task.mac_address] = {  # a newer task of the same MAC (ordered by id) replaces an older one
            "taskId": task.id, "action": answer.action, "script": answer.script, "document": answer.document,
            "grub": answer.grub, "chain": str(chain_for(session, task)),
        }
    return {"site": site.name, "bootUrl": site.boot_url, "generatedAt": utcnow().isoformat(), "answers": answers}


class ServedBoot(Spec):
    """One answer an edge gave: to which MAC, for which task, what, when, and whether it could reach the centre."""

    mac: Annotated[str, Field(max_length=17), AfterValidator(canonical_mac)]
    task_id: int = Field(ge=1, le=2**31 - 1)
    action: Literal["install", "localboot", "menu"]
    kind: Literal["ipxe", "grub"] = "ipxe"
    at: datetime = Field(strict=False, description="ISO 8601 with its offset")  # JSON carries it as text
    offline: bool = Field(default=False, description="The edge could not reach the centre when it answered")


class ServedReport(Spec):
    served: list[ServedBoot] = Field(max_length=MAX_SERVED)


def record_served(session: Session, site: Site, report: ServedReport) -> int:
    """Write the edge's boot lines on the logs of the site's tasks; lines of other tasks are dropped. Returns
    how many lines were for the site's tasks."""
    ids = {boot.task_id for boot in report.served}
    own = set(session.scalars(select(Task.id).where(Task.id.in_(ids), Task.site_id == site.id))) if ids else set()
    lines = []
    for boot in report.served:
        if boot.task_id not in own:
            continue
        what = "Boot script" if boot.kind == "ipxe" else "GRUB configuration"
        while_ = " while the centre was unreachable" if boot.offline else ""
        lines.append((boot.task_id, f"{what} served to {boot.mac} by the edge of site {site.name} at "
                                    f"{boot.at.isoformat()}{while_}: {boot.action}"))
    record_boots(session, lines)
    return len(lines)
