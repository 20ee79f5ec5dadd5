"""The Celery tasks of a task's steps: run one work step, roll back, check deadlines, notify; and a
machine's inspection.

Thin by design: each task takes ids, asks ``octoprov.pipeline`` whether there is work to
do, runs the step's action from ``octoprov.actions`` and records the outcome. No task waits for a machine: a task
whose next step is a wait step simply ends, and the status callback enqueues what follows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery.exceptions import Ignore

from octoprov import audit, events, inventory, pipeline, states
from octoprov.actions import run_action
from octoprov.context import load_context
from octoprov.errors import Cancelled, OctoprovError, TransientError
from octoprov.models import Task
from octoprov.targets.registry import target_for
from workers.app import app
from workers.runtime import worker_dispatcher, worker_runtime

if TYPE_CHECKING:
    from celery import Task as CeleryTask

log = logging.getLogger(__name__)
STALLED_AFTER_S = 60  # a pending task this old with nothing running was never queued


@app.task(name="octoprov.step", bind=True, max_retries=None)  # type: ignore[untyped-decorator]  # celery: untyped
def run_step(self: CeleryTask, task_id: int, name: str) -> str:
    runtime = worker_runtime()
    settings = runtime.settings
    with runtime.database.session() as session:
        claim = pipeline.claim(session, task_id, name, settings.step_lease_s)
        if isinstance(claim, str):
            if claim == pipeline.ALREADY_DONE:
                return claim  # a redelivered message: the chain goes on to the next (idempotent) step
            raise Ignore()  # the task ended, or another worker owns the step and continues the chain
        ctx = load_context(session, task_id, settings, runtime.database, runtime.vault)
    try:
        target = target_for(ctx.target_type)
        if target.before_step:
            target.before_step(ctx, name)
        detail = run_action(name, target, ctx)
    except Cancelled:
        log.info("task %s: %s stopped, task cancelled", task_id, name)
        raise Ignore() from None
    except TransientError as exc:
        with runtime.database.session() as session:
            if claim.attempt <= settings.step_retries:
                pipeline.release(session, task_id, name, str(exc))
                retry = True
            else:
                pipeline.fail(session, task_id, name, f"{exc} (gave up after {claim.attempt} attempts)")
                retry = False
        if retry:
            raise self.retry(countdown=settings.step_retry_base_s * 2 ** (claim.attempt - 1)) from None
        _after_failure(task_id, ctx.target_type)
        raise Ignore() from None
    except Exception as exc:
        message = exc.message if isinstance(exc, OctoprovError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OctoprovError):
            log.exception("task %s: step %s crashed", task_id, name)
        with runtime.database.session() as session:
            failed = pipeline.fail(session, task_id, name, message)
        if failed:
            _after_failure(task_id, ctx.target_type)
        raise Ignore() from None
    with runtime.database.session() as session:
        pipeline.complete(session, settings, task_id, name, detail)
        finished = session.get_one(Task, task_id).status == states.COMPLETED
    log.info("task %s: %s done by %s", task_id, name, self.request.hostname)  # which host ran it, across pools
    if finished:
        worker_dispatcher().notify(task_id)
    return detail


def _after_failure(task_id: int, target_type: str) -> None:
    runtime = worker_runtime()
    with runtime.database.session() as session:
        keep = pipeline.keeps_machine(session, session.get_one(Task, task_id))
        if keep:
            pipeline.log(session, task_id, "Rollback skipped: the request asked to keep the machine", step="rollback")
    worker_dispatcher().after_failure(task_id, target_type, keep)


@app.task(name="octoprov.rollback")  # type: ignore[untyped-decorator]  # celery: untyped
def rollback(task_id: int) -> list[str]:
    """Remove everything the task created: machine, boot configuration, computer account."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        ctx = load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)
        had_account = session.get_one(Task, task_id).domain_join_blob is not None
    done = []
    try:
        target = target_for(ctx.target_type)
    except OctoprovError as exc:
        target, done = None, [f"nothing to roll back: {exc.message}"]
    if target is not None:
        actions = [("machine", target.compute.destroy_machine), ("boot config", target.boot.cleanup_boot)]
        if had_account:
            actions.append(("computer account", target.domain.remove_computer_account))
        for what, action in actions:
            try:
                done.append(action(ctx))
            except Exception as exc:  # one failed part must not keep the others from being removed
                done.append(f"could not remove the {what}: {exc}")
    with runtime.database.session() as session:
        task = session.get_one(Task, task_id)
        task.machine_ref = None
        task.domain_join_blob = None
        for line in done:
            pipeline.log(session, task_id, f"Rollback: {line}", step="rollback")
    worker_dispatcher().notify(task_id)
    return done


@app.task(name="octoprov.inspect_machine")  # type: ignore[untyped-decorator]  # celery: untyped
def inspect_machine(machine_id: int) -> dict[str, Any]:
    """Read a bare-metal machine's inventory from its BMC (on the bare-metal pool, which reaches BMCs)."""
    runtime = worker_runtime()
    return inventory.inspect_machine(runtime.database, runtime.vault, machine_id)


@app.task(name="octoprov.prune_audit")  # type: ignore[untyped-decorator]  # celery: untyped
def prune_audit() -> int:
    """Periodic (daily): delete the audit entries older than OCTOPROV_AUDIT_RETENTION_DAYS."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        return audit.prune(session, runtime.settings.audit_retention_days)


@app.task(name="octoprov.prune_events")  # type: ignore[untyped-decorator]  # celery: untyped
def prune_events() -> int:
    """Periodic (daily): delete the live-stream events older than OCTOPROV_EVENT_RETENTION_DAYS."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        return events.prune(session, runtime.settings.event_retention_days)


@app.task(name="octoprov.check_deadlines")  # type: ignore[untyped-decorator]  # celery: untyped
def check_deadlines() -> list[int]:
    """Periodic: fail (and roll back) tasks whose wait step's deadline passed, and queue the
    first steps of tasks that could not be queued when they were created."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        expired = pipeline.expire_deadlines(session)
        kinds = {task.id: task.target_type for task in session.query(Task).filter(Task.id.in_(expired))}
        waiting = pipeline.stalled(session, STALLED_AFTER_S)
    for task_id in expired:
        _after_failure(task_id, kinds[task_id])
    for task_id, target_type, names in waiting:
        worker_dispatcher().run_steps(task_id, target_type, names)
    return expired


@app.task(name="octoprov.notify_task")  # type: ignore[untyped-decorator]  # celery: untyped
def notify_task(task_id: int) -> list[str]:
    """Fan a finished task out to its webhooks."""
    from workers.notify import enqueue_notifications

    runtime = worker_runtime()
    with runtime.database.session() as session:
        task = session.get_one(Task, task_id)
        return enqueue_notifications(app, runtime.settings, task)
