"""Moving a task through its steps: the part of the pipeline that is pure database work.

Celery tasks (``workers/step_tasks.py``) call these functions; nothing here blocks on the
outside world. Every change is a conditional UPDATE, so a redelivered message, a second
worker or a late callback can never run a step twice or move a task backwards:

* a work step is *claimed* (pending -> running, with a lease); a message that finds the step
  done, or running under someone else's valid lease, does nothing;
* a wait step is *activated* with a deadline and completed only by its callback event;
* the task's state follows the phase of its current step (``octoprov.steps``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, cast

from sqlalchemy import (
    BindParameter,
    CursorResult,
    Integer,
    Row,
    Select,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from octoprov import states, steps
from octoprov.crypto import Vault
from octoprov.db import expire_loaded
from octoprov.errors import Conflict, OctoprovError
from octoprov.lookup import fetch, fetch_rows
from octoprov.models import Task, TaskLog, TaskStep, aware, utcnow
from octoprov.results import MachineFacts, record_facts
from octoprov.settings import Settings


class StepStatus(StrEnum):
    """Where one step of a task stands (the task's own state is ``octoprov.states``)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Forbidden(OctoprovError):
    status = 403


class StepState(Protocol):
    """What deciding the next run of work steps reads of a step: an ORM row or a Core row will do."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...


class FollowingStep(StepState, Protocol):
    """The step after a finished one, as its caller read it already (a Core row of the callback's read)."""

    @property
    def id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def phase(self) -> str: ...


TASKS, STEPS, LOGS = states.TASKS, cast(Table, TaskStep.__table__), cast(Table, TaskLog.__table__)
# built once: a step writes a few lines, and building costs more than sending; inline: nothing reads the new
# line's id, so PostgreSQL returns none (SQLAlchemy would ask for it with RETURNING)
_LOG_LINE = insert(LOGS).inline()


def log(session: Session, task_id: int, message: str, *, level: str = "info", step: str | None = None) -> None:
    """One line of the task's log, written at once (not through the unit of work)."""
    session.connection().execute(_LOG_LINE, {"task_id": task_id, "message": message, "level": level, "step": step,
                                             "timestamp": utcnow()})


_STEP_ROWS = insert(STEPS).inline()  # built once; nothing reads the new rows' ids


def add_steps(session: Session, task_id: int, planned: list[steps.StepDef]) -> None:
    """A new task's steps in one executemany, not through the unit of work: its bookkeeping, and the long
    statement that returns every new row's id, cost more than the rows themselves (nothing reads them back).
    The task's ``current_step`` is the first step's title, set by the caller on the task row it inserts."""
    session.connection().execute(_STEP_ROWS, [
        {"task_id": task_id, "position": position, "name": step.name, "title": step.title, "kind": step.kind,
         "phase": step.phase, "event": step.event} for position, step in enumerate(planned, start=1)])


def step_rows(session: Session, task_id: int) -> list[TaskStep]:
    return list(session.scalars(select(TaskStep).where(TaskStep.task_id == task_id).order_by(TaskStep.position)))


def _progress_statement() -> Update:
    """``progress_percent`` and ``current_step`` derived from the steps, in the database: one statement,
    built once, no step rows loaded."""
    task_id: BindParameter[int] = bindparam("b_task_id", type_=Integer)
    of_task = TaskStep.task_id == task_id
    total = select(func.count(TaskStep.id)).where(of_task).scalar_subquery()
    done = select(func.count(TaskStep.id)).where(of_task, TaskStep.status == StepStatus.DONE).scalar_subquery()
    current = (select(TaskStep.title).where(of_task, TaskStep.status != StepStatus.DONE)
               .order_by(TaskStep.position).limit(1).scalar_subquery())
    return update(TASKS).where(TASKS.c.id == task_id).values(
        progress_percent=case((total == 0, 100), else_=(100 * done) // total),  # truncated, as int() would
        current_step=current,
    )


_PROGRESS = _progress_statement()


def refresh_progress(session: Session, task_id: int) -> None:
    """The task's progress and current step brought up to date (after every step); a copy of the task
    loaded in this session reads them again."""
    session.connection().execute(_PROGRESS, {"b_task_id": task_id})
    expire_loaded(session, Task, task_id, ["progress_percent", "current_step"])


def _enter_statement(phase: str) -> Update:
    """Move a task into ``phase`` from any state that may precede it; ``started_at`` is set when it
    leaves pending."""
    started = case((TASKS.c.status == states.PENDING, bindparam("b_now", type_=TASKS.c.started_at.type)),
                   else_=TASKS.c.started_at)
    return (update(TASKS).where(TASKS.c.id == bindparam("b_task_id", type_=Integer),
                                TASKS.c.status.in_(states.sources_of(phase)))
            .values(status=phase, started_at=started))


_ENTER = {phase: _enter_statement(phase) for phase in states.ACTIVE - {states.PENDING}}  # built once


def _enter_phase(session: Session, task_id: int, phase: str, status: str | None = None) -> bool:
    """Move the task into ``phase`` unless it is there already; False when it is final. ``status`` is the
    task's state when the caller read it; unknown, the move is tried first and the state read only when
    the move did not happen (the task was in the phase already, or over)."""
    if status == phase:
        return True
    if status in states.FINAL:
        return False
    session.flush()  # the statement goes past the ORM: what the session holds is written first
    moved = session.connection().execute(_ENTER[phase], {"b_task_id": task_id, "b_now": utcnow()}).rowcount == 1
    if moved:
        expire_loaded(session, Task, task_id, ["status", "started_at"])
        return True
    return status is None and session.scalar(select(Task.status).where(Task.id == task_id)) == phase


# -- work steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    step: str
    title: str
    attempt: int
    machine: tuple[str | None, str | None] = (None, None)  # the task's MAC and machine ref as the claim found them


# why a step could not be claimed
TASK_OVER, ALREADY_DONE, TAKEN = "task over", "already done", "taken"


def _claim_statement(following: bool = False) -> Update:
    """Take a work step while its task is active, returning the step with its task's state and machine;
    ``following``: only while it is the pending step right after ``b_position`` (a completion's next)."""
    step, task = STEPS.c, TASKS.c
    task_id: BindParameter[int] = bindparam("b_task_id", type_=Integer)
    now = bindparam("b_now", type_=step.started_at.type)
    resume: BindParameter[int] = bindparam("b_resume", type_=Integer)  # NULL matches nothing
    task_status, mac, machine_ref = (select(column).where(task.id == task_id).scalar_subquery()
                                     for column in (task.status, task.mac_address, task.machine_ref))
    takeable = (step.position == bindparam("b_position", type_=Integer) + 1) & (step.status == StepStatus.PENDING) \
        if following else or_(step.status == StepStatus.PENDING,
                              (step.status == StepStatus.RUNNING) & (step.lease_until < now),
                              (step.status == StepStatus.RUNNING) & (step.attempts == resume))
    return (
        update(STEPS)
        .where(step.task_id == task_id, step.name == bindparam("b_name"), step.kind == steps.WORK, takeable,
               task_status.not_in(states.FINAL))
        .values(status=StepStatus.RUNNING, lease_until=bindparam("b_lease_until", type_=step.lease_until.type),
                attempts=step.attempts + 1, started_at=now, finished_at=None)
        .returning(step.id, step.title, step.phase, step.attempts, task_status, mac, machine_ref)
    )


_CLAIM, _CLAIM_FOLLOWING = _claim_statement(), _claim_statement(following=True)


def claim(session: Session, task_id: int, name: str, lease_s: int, *, resume: int | None = None) -> Claim | str:
    """Take a work step for this worker, or say why not: the task is over, the step is done
    (a redelivered message), or another worker runs it under a valid lease (a duplicate).
    ``resume`` is the attempt of this worker's own earlier claim, which an infrastructure error
    interrupted: that claim is taken back even though its lease still runs.

    One statement while the task stays in its phase: the conditional UPDATE takes the step only while
    its task is active and returns the step with the task's state."""
    taken = _take(session, task_id, name, lease_s, resume=resume)
    if taken is None:
        return _why_not_claimed(session, task_id, name)
    return taken


def _take(session: Session, task_id: int, name: str, lease_s: int, *, resume: int | None = None,
          after: int | None = None) -> Claim | str | None:
    """The claim statement and the task's move into the step's phase: the claim; None when the statement
    took nothing; TASK_OVER when the task ended meanwhile. ``after``: take the step only while it is the
    pending one right after that position (a completion's transaction takes its next step so). A step taken
    for a task that ended is given back: by rolling the transaction back, or (``after``: the transaction
    holds the completion) by a statement that makes the pending step pending again."""
    now = utcnow()
    taken = session.connection().execute(_CLAIM if after is None else _CLAIM_FOLLOWING, {
        "b_task_id": task_id, "b_name": name, "b_now": now, "b_lease_until": now + timedelta(seconds=lease_s),
        "b_resume": resume, "b_position": after}).first()
    if taken is None:
        return None
    step_id, title, phase, attempts, status, mac, machine_ref = taken
    expire_loaded(session, TaskStep, step_id)
    if not _enter_phase(session, task_id, phase, status):
        if after is not None:
            session.connection().execute(_UNCLAIM, {"b_id": step_id})
        else:
            session.rollback()
        return TASK_OVER
    if attempts > 1:
        log(session, task_id, f"{title}: attempt {attempts}", step=name)
    return Claim(name, title, attempts, (mac, machine_ref))


# a pending step taken for a task that ended made pending again (only pending steps are taken with ``after``)
_UNCLAIM = (update(STEPS).where(STEPS.c.id == bindparam("b_id", type_=Integer))
            .values(status=StepStatus.PENDING, attempts=STEPS.c.attempts - 1, lease_until=None, started_at=None))


def _why_not_claimed(session: Session, task_id: int, name: str) -> str:
    step_status = select(TaskStep.status).where(TaskStep.task_id == task_id, TaskStep.name == name).scalar_subquery()
    row = session.execute(select(Task.status, step_status).where(Task.id == task_id)).first()
    if row is None or row[0] in states.FINAL:
        return TASK_OVER
    return ALREADY_DONE if row[1] == StepStatus.DONE else TAKEN


@dataclass(frozen=True)
class Completed:
    """A work step recorded as done; ``task_completed`` when it was the task's last step; ``claimed``, the
    step that follows when the worker asked to take it in the same transaction and could."""

    task_completed: bool
    claimed: Claim | None = None


def _complete_statement() -> Update:
    """Mark a running step done, while the claim ``attempt`` (NULL: any) holds it."""
    step = STEPS.c
    attempt: BindParameter[int] = bindparam("b_attempt", type_=Integer)
    return (
        update(STEPS)
        .where(step.task_id == bindparam("b_task_id", type_=Integer), step.name == bindparam("b_name"),
               step.status == StepStatus.RUNNING, or_(attempt.is_(None), step.attempts == attempt))
        .values(status=StepStatus.DONE, finished_at=bindparam("b_now", type_=step.finished_at.type),
                detail=bindparam("b_detail"), lease_until=None)
        .returning(step.id, step.position, step.title)
    )


_COMPLETE = _complete_statement()
_FOLLOWING = (select(STEPS.c.id, STEPS.c.name, STEPS.c.title, STEPS.c.kind, STEPS.c.status, STEPS.c.phase)
              .where(STEPS.c.task_id == bindparam("b_task_id", type_=Integer),
                     STEPS.c.position > bindparam("b_position", type_=Integer))
              .order_by(STEPS.c.position).limit(1))


def complete(session: Session, settings: Settings, task_id: int, name: str, detail: str,
             attempt: int | None = None, *, claim_next: str | None = None, lease_s: int = 0) -> Completed | None:
    """Mark a claimed work step done and activate the wait step that follows, if any; None when the
    step was not this worker's to complete. With ``attempt``, only while that claim still holds the step
    (no other worker took it over). ``claim_next``: the work step the worker runs next; when it follows
    this one and is pending it is claimed (``lease_s``) in the same transaction, which saves the run a
    round trip per step."""
    done = session.connection().execute(_COMPLETE, {
        "b_task_id": task_id, "b_name": name, "b_attempt": attempt, "b_now": utcnow(), "b_detail": detail}).first()
    if done is None:
        return None
    step_id, position, title = done
    expire_loaded(session, TaskStep, step_id)
    log(session, task_id, f"{title}: {detail}", step=name)
    if claim_next is not None:
        claimed = _take(session, task_id, claim_next, lease_s, after=position)
        if isinstance(claimed, Claim):  # a work step follows: nothing to activate, the task goes on
            refresh_progress(session, task_id)
            return Completed(False, claimed)
    return Completed(_after(session, settings, task_id, name, _following(session, task_id, position)))


def release(session: Session, task_id: int, name: str, reason: str, retry_in_s: float = 0) -> None:
    """Give a claimed step back after a transient error, so its retry (due in ``retry_in_s``) can
    claim it again; the periodic job leaves it alone until then."""
    session.execute(
        update(TaskStep)
        .where(TaskStep.task_id == task_id, TaskStep.name == name, TaskStep.status == StepStatus.RUNNING)
        .values(status=StepStatus.PENDING, lease_until=None, detail=reason,
                queued_at=utcnow() + timedelta(seconds=retry_in_s))
        .execution_options(synchronize_session="fetch")
    )
    log(session, task_id, f"{_title(session, task_id, name)}: {reason}; retrying", level="warn", step=name)


def renew_lease(session: Session, task_id: int, name: str, attempt: int, lease_s: int) -> bool:
    """A running step's heartbeat: its worker is alive, so nobody may take the step over for another
    lease. False when the claim is no longer this worker's (the step ended, or was taken over)."""
    renewed = cast(CursorResult[Any], session.execute(  # an UPDATE's result: it has the rowcount
        update(TaskStep)
        .where(TaskStep.task_id == task_id, TaskStep.name == name, TaskStep.status == StepStatus.RUNNING,
               TaskStep.attempts == attempt)
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session="fetch")
    )).rowcount
    return bool(renewed)


def lease_left_s(session: Session, task_id: int, name: str) -> float | None:
    """Seconds left of the lease of a running work step; None when the step is not running."""
    row = session.execute(select(TaskStep.status, TaskStep.lease_until)
                          .where(TaskStep.task_id == task_id, TaskStep.name == name)).first()
    if row is None or row.status != StepStatus.RUNNING or row.lease_until is None:
        return None
    return (aware(row.lease_until) - utcnow()).total_seconds()


def _title(session: Session, task_id: int, name: str) -> str:
    return session.scalar(select(TaskStep.title).where(TaskStep.task_id == task_id, TaskStep.name == name)) or name


def _after(session: Session, settings: Settings, task_id: int, name: str, following: FollowingStep | None,
           status: str | None = None) -> bool:
    """What follows the finished step: a wait step (``following``, as the caller read it) is activated; the
    end completes the task (True). ``status``: the task's state as the caller read it (see ``_enter_phase``)."""
    completed = False
    if following is None:
        completed = states.transition(session, task_id, states.COMPLETED)
        if completed:
            log(session, task_id, "Task completed", step=name)
    elif following.kind == steps.WAIT and following.status == StepStatus.PENDING:
        _activate_wait(session, settings, task_id, following.id, following.name, following.title, following.phase,
                       status)
    refresh_progress(session, task_id)
    return completed


def _following(session: Session, task_id: int, position: int) -> FollowingStep | None:
    """The step after ``position``, if any."""
    row: FollowingStep | None = session.connection().execute(
        _FOLLOWING, {"b_task_id": task_id, "b_position": position}).first()
    return row


_ACTIVATE = (update(STEPS).where(STEPS.c.id == bindparam("b_id", type_=Integer), STEPS.c.status == StepStatus.PENDING)
             .values(status=StepStatus.RUNNING, started_at=bindparam("b_now", type_=STEPS.c.started_at.type),
                     deadline_at=bindparam("b_deadline", type_=STEPS.c.deadline_at.type)))


def _activate_wait(session: Session, settings: Settings, task_id: int, step_id: int, name: str, title: str,
                   phase: str, status: str | None = None) -> None:
    seconds = settings.deadline_s(name)
    if not _enter_phase(session, task_id, phase, status):
        return
    now = utcnow()
    session.connection().execute(_ACTIVATE, {"b_id": step_id, "b_now": now,
                                             "b_deadline": now + timedelta(seconds=seconds)})
    expire_loaded(session, TaskStep, step_id)
    log(session, task_id, f"Waiting for: {title} (deadline {seconds} s)", step=name)


def next_work_run(session: Session, task_id: int) -> list[str]:
    """The consecutive pending work steps from the current position: the next chain to enqueue."""
    return _work_run(step_rows(session, task_id))


def _work_run(rows: Sequence[StepState]) -> list[str]:
    run: list[str] = []
    for row in rows:
        if row.status == StepStatus.DONE and not run:
            continue
        if row.kind != steps.WORK or row.status != StepStatus.PENDING:
            break
        run.append(row.name)
    return run


def fail(session: Session, task_id: int, name: str | None, message: str) -> bool:
    """Fail the task at a step; False when it already ended (cancelled, say)."""
    title = _title(session, task_id, name) if name else "task"
    if not states.transition(session, task_id, states.FAILED, error_message=f"{title}: {message}"):
        return False
    if name:
        session.execute(
            update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name == name)
            .values(status=StepStatus.FAILED, finished_at=utcnow(), detail=message, lease_until=None)
            .execution_options(synchronize_session="fetch")
        )
    log(session, task_id, f"{title} failed: {message}", level="error", step=name)
    refresh_progress(session, task_id)
    task = session.get_one(Task, task_id)
    if not keeps_machine(session, task):  # recorded with the failure, so a rollback that could not be sent is not lost
        task.rollback_due_at = utcnow()
    return True


def keeps_machine(session: Session, task: Task) -> bool:
    """Whether a failed task's machine stays instead of being rolled back: the request asked to keep it
    (for debugging), or it failed in post-install and the request did not ask for a rollback then
    (an installed machine is worth more than one item that did not run)."""
    config = task.config or {}
    if (config.get("options") or {}).get("keepVmOnFailure", False):
        return True
    if (config.get("postInstall") or {}).get("onFailure", "keep") != "keep":
        return False
    failed = session.scalar(select(TaskStep.name).where(TaskStep.task_id == task.id,
                                                        TaskStep.status == StepStatus.FAILED))
    return failed is not None and steps.is_post_install(failed)


# -- callbacks from the machine --------------------------------------------------------------------

FAILED_BY_MACHINE = "failed"  # the reason of an accepted report that failed its task


@dataclass(frozen=True)
class CallbackOutcome:
    accepted: bool
    reason: str
    resume: list[str]  # work steps to enqueue now
    warning: str | None = None  # what of the report was not kept, and why (the machine is told)
    target_type: str = ""  # the task's, for queuing what follows

    @property
    def failed_task(self) -> bool:
        """This report failed the task (its rollback is due)."""
        return self.accepted and self.reason == FAILED_BY_MACHINE


def _callback_read() -> Select[Any]:
    """What a callback reads, in one statement built once: the task's state, target type and token, with
    its steps in order (an outer join: a task without steps still answers, with one empty step row)."""
    task, step = TASKS.c, STEPS.c
    return (select(task.status.label("task_status"), task.target_type, task.callback_token_encrypted,
                   step.id, step.name, step.title, step.kind, step.status, step.event, step.position, step.phase)
            .select_from(TASKS.outerjoin(STEPS, step.task_id == task.id))
            .where(task.id == bindparam("b_task_id", type_=Integer))
            .order_by(step.position))


def _waited_statement() -> Update:
    """Complete a running wait step, returning its task's state (as ``claim`` does) for entering the next
    phase without reading it again."""
    step, task = STEPS.c, TASKS.c
    task_status = select(task.status).where(task.id == step.task_id).scalar_subquery()
    return (update(STEPS).where(step.id == bindparam("b_id", type_=Integer), step.status == StepStatus.RUNNING)
            .values(status=StepStatus.DONE, finished_at=bindparam("b_now", type_=step.finished_at.type),
                    detail=bindparam("b_detail", type_=step.detail.type), deadline_at=None)
            .returning(task_status.label("task_status")))


_CALLBACK_READ = _callback_read()
_WAITED = _waited_statement()
_STEP_DETAIL = (update(STEPS).where(STEPS.c.id == bindparam("b_id", type_=Integer))
                .values(detail=bindparam("b_detail", type_=STEPS.c.detail.type)))


def verify_token(encrypted: str | None, token: str, vault: Vault) -> None:
    """The report's token against the task's encrypted one (its column, as read), compared in constant time."""
    expected = vault.decrypt(encrypted) if encrypted else ""
    if not expected or not hmac.compare_digest(expected.encode(), (token or "").encode()):
        raise Forbidden("the callback token does not belong to this task")


def handle_callback(session: Session, settings: Settings, vault: Vault, task_id: int, token: str, event: str,
                    status: str, message: str | None, facts: MachineFacts | None = None, *,
                    source: str | None = None) -> CallbackOutcome:
    """Apply a machine's status report. Duplicates and reports out of order are logged and ignored;
    what the machine says about itself (addresses, SSH host keys) is kept from any authentic report
    that came from (``source``, the address Octoprov saw) one of the addresses it claims.

    The task and its steps are read once, as Core rows (the hot path of every machine's reports)."""
    rows = fetch_rows(session, _CALLBACK_READ, {"b_task_id": task_id}, task_id, "task")
    task = rows[0]  # every row carries the task's columns
    verify_token(task.callback_token_encrypted, token, vault)
    text = f"Callback {event} ({status})" + (f" from {source}" if source else "") + (f": {message}" if message else "")
    if task.task_status in states.FINAL:
        log(session, task_id, text + f" - ignored, task is {task.task_status}", level="warn", step=event)
        return CallbackOutcome(False, f"task is {task.task_status}", [])
    refused = record_facts(session, task_id, facts, source=source) if facts is not None else None
    step_list = rows if task.id is not None else ()  # a task without steps: its one row's step id is NULL
    outcome = replace(_handle_event(session, settings, task_id, event, status, message, text, step_list),
                      target_type=task.target_type)
    if refused is None:
        return outcome
    warning = f"addresses not stored: the callback {refused}"
    log(session, task_id, f"Callback {event} {warning}", level="warn", step=event)
    return replace(outcome, warning=warning)


def _handle_event(session: Session, settings: Settings, task_id: int, event: str, status: str,
                  message: str | None, text: str, rows: Sequence[Row[Any]]) -> CallbackOutcome:
    """The event's effect on the steps (``rows``, as the callback read them): complete its wait step,
    fail the task, or nothing."""
    current = next((row for row in rows if row.status != StepStatus.DONE), None)
    if event == "progress":
        if current is not None and message:
            session.connection().execute(_STEP_DETAIL, {"b_id": current.id, "b_detail": message[:2000]})
            expire_loaded(session, TaskStep, current.id, ["detail"])
        log(session, task_id, text, step=current.name if current else None)
        return CallbackOutcome(True, "progress recorded", [])
    index, target = next(((index, row) for index, row in enumerate(rows) if row.event == event), (-1, None))
    if target is None:
        log(session, task_id, text + " - ignored, this task expects no such event", level="warn", step=event)
        return CallbackOutcome(False, "no step waits for this event", [])
    if target.status == StepStatus.DONE:
        log(session, task_id, text + " - duplicate, ignored", level="debug", step=target.name)
        return CallbackOutcome(False, "duplicate", [])
    if current is None or target.id != current.id or current.status != StepStatus.RUNNING:
        log(session, task_id, text + f" - out of order (waiting for {current.title if current else 'nothing'}), "
            "ignored", level="warn", step=target.name)
        return CallbackOutcome(False, "out of order", [])
    log(session, task_id, text, step=target.name)
    if status == "failed":
        fail(session, task_id, target.name, message or "the machine reported a failure")
        return CallbackOutcome(True, FAILED_BY_MACHINE, [])
    rest = rows[index + 1:]
    run = _work_run(rest)  # as read: activating a wait step does not change where it stops
    done = session.connection().execute(_WAITED, {"b_id": target.id, "b_now": utcnow(),
                                                  "b_detail": message or "Callback received"}).first()
    expire_loaded(session, TaskStep, target.id)
    if done is None:  # another report completed it meanwhile: what follows is read again, as it stands now
        _after(session, settings, task_id, target.name, _following(session, task_id, target.position))
    else:
        _after(session, settings, task_id, target.name, rest[0] if rest else None, done.task_status)
    return CallbackOutcome(True, "step completed", run)


# -- deadlines, cancel, retry ----------------------------------------------------------------------


def expire_deadlines(session: Session) -> list[int]:
    """Fail every task whose wait step's deadline passed; returns their ids."""
    overdue = session.execute(
        select(TaskStep.task_id, TaskStep.name, TaskStep.title, TaskStep.started_at, TaskStep.deadline_at)
        .join(Task, Task.id == TaskStep.task_id)
        .where(TaskStep.kind == steps.WAIT, TaskStep.status == StepStatus.RUNNING, TaskStep.deadline_at < utcnow(),
               Task.status.in_(states.ACTIVE))
    ).all()
    failed = []
    for task_id, name, title, started, deadline in overdue:
        waited = int((deadline - started).total_seconds()) if started and deadline else 0
        if fail(session, task_id, name, f"timed out waiting for {title} after {waited} s"):
            failed.append(task_id)
    return failed


@dataclass(frozen=True)
class LostWork:
    """An active task whose next work steps nothing will run: their message was lost (a worker killed
    between taking it and recording it, a broker restarted without persistence, a redelivery that
    came just before the lease ran out) or never sent (the broker was down)."""

    task_id: int
    target_type: str
    steps: list[str]
    reason: str


def lost_work(session: Session, grace_s: float, limit: int) -> list[LostWork]:
    """Active tasks whose next work step is pending with nothing running, or running under a lease
    that ran out, for ``grace_s`` or longer; each is marked as sent again now (``queued_at``), so a
    busy queue gets one more message per grace period at most. At most ``limit`` tasks per call."""
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_s)
    candidates = select(TaskStep.task_id).join(Task, Task.id == TaskStep.task_id).where(
        Task.status.in_(states.ACTIVE), TaskStep.kind == steps.WORK,
        or_(TaskStep.status == StepStatus.PENDING,
            (TaskStep.status == StepStatus.RUNNING) & (TaskStep.lease_until < now)),
        or_(TaskStep.queued_at.is_(None), TaskStep.queued_at < cutoff),
    ).distinct().order_by(TaskStep.task_id)
    found: list[LostWork] = []
    for task_id in session.scalars(candidates):
        task = session.get_one(Task, task_id)
        lost = _lost_run(step_rows(session, task_id), aware(task.created_at), now, cutoff)
        if lost is None:
            continue
        names, reason = lost
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name == names[0])
                        .values(queued_at=now).execution_options(synchronize_session="fetch"))
        log(session, task_id, f"{_title(session, task_id, names[0])}: queued again after {reason}", level="warn",
            step=names[0])
        found.append(LostWork(task_id, task.target_type, names, reason))
        if len(found) >= limit:
            break
    return found


def _lost_run(rows: list[TaskStep], created: datetime, now: datetime,
              cutoff: datetime) -> tuple[list[str], str] | None:
    """The work steps to send again and why, when the task's current step is a work step nothing runs."""
    current = next((i for i, row in enumerate(rows) if row.status != StepStatus.DONE), None)
    if current is None or rows[current].kind != steps.WORK:
        return None  # finished, or waiting for its machine: the deadline check watches that
    row = rows[current]
    if row.queued_at is not None and aware(row.queued_at) >= cutoff:
        return None
    if row.status == StepStatus.RUNNING:
        if row.lease_until is None or aware(row.lease_until) >= now:
            return None
        expired_s = int((now - aware(row.lease_until)).total_seconds())
        return [row.name, *_work_run(rows[current + 1:])], f"its worker was lost (lease ran out {expired_s} s ago)"
    if row.status != StepStatus.PENDING:
        return None
    since = aware(rows[current - 1].finished_at or created) if current else created
    if since >= cutoff:
        return None  # its message may still be on its way
    return _work_run(rows[current:]), f"{int((now - since).total_seconds())} s without a worker taking it"


def rollbacks_due(session: Session, grace_s: float, limit: int) -> list[tuple[int, str]]:
    """Failed or cancelled tasks whose rollback was asked for ``grace_s`` ago or longer and has not run:
    its message was lost or could not be sent. Each is marked as asked again now."""
    now = utcnow()
    due = session.execute(
        select(Task.id, Task.target_type)
        .where(Task.status.in_((states.FAILED, states.CANCELLED)),
               Task.rollback_due_at < now - timedelta(seconds=grace_s))
        .order_by(Task.id).limit(limit)
    ).all()
    for task_id, _ in due:
        session.execute(update(Task).where(Task.id == task_id).values(rollback_due_at=now))
        log(session, task_id, "Rollback queued again: it had not run", level="warn", step="rollback")
    return [(task_id, target_type) for task_id, target_type in due]


def cancel(session: Session, task_id: int) -> Task:
    """Cancel a task in any unfinished state; running steps stop at their next check."""
    task = fetch(session, Task, task_id, "task")
    if not states.transition(session, task_id, states.CANCELLED):
        session.refresh(task)
        raise Conflict(f"task {task_id} is {task.status} and can no longer be cancelled")
    session.execute(
        update(TaskStep)
        .where(TaskStep.task_id == task_id, TaskStep.status.in_((StepStatus.PENDING, StepStatus.RUNNING)))
        .values(status=StepStatus.CANCELLED, lease_until=None, deadline_at=None)
        .execution_options(synchronize_session="fetch")
    )
    task.rollback_due_at = utcnow()
    log(session, task_id, "Task cancelled on request", step="cancel")
    refresh_progress(session, task_id)
    session.flush()
    session.refresh(task)
    return task


def retry(session: Session, task_id: int, rolled_back: bool) -> list[str]:
    """Restart a failed task from its failed step (from the start when rollback removed the machine).
    A failed wait step restarts from the work steps before it, which boot the machine again."""
    task = fetch(session, Task, task_id, "task")
    if task.status != states.FAILED:
        raise Conflict(f"task {task_id} is {task.status}; only a failed task can be retried")
    rows = step_rows(session, task_id)
    start = 0 if rolled_back else next((i for i, row in enumerate(rows) if row.status == StepStatus.FAILED), 0)
    while start > 0 and rows[start].kind == steps.WAIT:
        start -= 1
    if not states.transition(session, task_id, states.PENDING, error_message=None, completed_at=None,
                             rollback_due_at=None):
        raise Conflict(f"task {task_id} changed meanwhile; try again")
    for row in rows[start:]:
        row.status, row.started_at, row.finished_at, row.detail = StepStatus.PENDING, None, None, None
        row.deadline_at = row.lease_until = row.queued_at = None
        row.attempts = 0
    log(session, task_id, f"Retry requested: restarting from {rows[start].title}", step="retry")
    session.flush()
    refresh_progress(session, task_id)
    return next_work_run(session, task_id)
