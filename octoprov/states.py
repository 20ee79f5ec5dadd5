"""Task states and the transitions allowed between them, declared once as data.

Every change of a task's state goes through ``transition``: one conditional UPDATE
(``WHERE id = :id AND status IN (:allowed)``), so two workers or a late callback can
never both move the same task, and a task never moves backwards.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from octoprov.db import expire_loaded
from octoprov.models import Task, utcnow

TASKS = cast(Table, Task.__table__)

PENDING = "pending"  # accepted, waiting for a worker to start it
CREATING_VM = "creating_vm"  # the target is creating the machine and its boot configuration
BOOTING = "booting"  # the machine is powered on and expected to network-boot
INSTALLING = "installing"  # the installer reported in and is laying down the OS
CONFIGURING = "configuring"  # first boot done: domain join and post-install run
COMPLETED = "completed"  # final: the machine is ready
FAILED = "failed"  # final (until retried): a step failed; error_message says which
CANCELLED = "cancelled"  # final: stopped on request and rolled back

ALL = (PENDING, CREATING_VM, BOOTING, INSTALLING, CONFIGURING, COMPLETED, FAILED, CANCELLED)
DESCRIPTIONS = {
    PENDING: "accepted, waiting for a worker to start it",
    CREATING_VM: "the target creates the machine and its boot configuration",
    BOOTING: "powered on; waiting for the installer to report in",
    INSTALLING: "the installer reported in and lays down the OS",
    CONFIGURING: "first boot done: domain join and post-install",
    COMPLETED: "the machine is ready",
    FAILED: "a step failed; error_message names it (a retry starts again from that step)",
    CANCELLED: "stopped on request and rolled back",
}
FINAL = frozenset({COMPLETED, FAILED, CANCELLED})
ACTIVE = frozenset(ALL) - FINAL

TRANSITIONS: dict[str, frozenset[str]] = {
    # a new task starts creating its machine; a retried one re-enters at its failed step's phase
    PENDING: frozenset({CREATING_VM, BOOTING, INSTALLING, CONFIGURING, FAILED, CANCELLED}),
    CREATING_VM: frozenset({BOOTING, FAILED, CANCELLED}),
    BOOTING: frozenset({INSTALLING, FAILED, CANCELLED}),
    INSTALLING: frozenset({CONFIGURING, FAILED, CANCELLED}),
    CONFIGURING: frozenset({COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset({PENDING}),  # retry
    CANCELLED: frozenset(),
}


def sources_of(target: str) -> frozenset[str]:
    """The states from which ``target`` may be entered."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)


def transition(session: Session, task_id: int, target: str, **values: Any) -> bool:
    """Move the task to ``target`` if its current state allows it; False when another writer won."""
    if target not in TRANSITIONS:
        raise ValueError(f"unknown state {target!r}")
    if target in FINAL:
        values.setdefault("completed_at", utcnow())
    session.flush()  # the statement goes past the ORM: what the session holds is written first
    result = session.connection().execute(
        update(TASKS).where(TASKS.c.id == task_id, TASKS.c.status.in_(sources_of(target)))
        .values(status=target, **values))
    if result.rowcount != 1:
        return False
    expire_loaded(session, Task, task_id, ["status", *values])
    return True
