"""The Celery tasks of a task's steps: run one work step, roll back, check deadlines, notify; and a
machine's inspection.

Thin by design: each task takes ids, asks ``octoprov.pipeline`` whether there is work to
do, runs the step's action from ``octoprov.actions`` and records the outcome. No task waits for a machine: a task
whose next step is a wait step simply ends, and the status callback enqueues what follows.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

from celery.exceptions import Ignore, Reject, Retry

from octoprov import audit, events, inventory, pipeline, states, webhooks
from octoprov.actions import run_action
from octoprov.context import load_context, with_machine
from octoprov.errors import Cancelled, OctoprovError, TransientError, is_infrastructure, send_unless_unreachable
from octoprov.models import Task
from octoprov.targets.registry import target_for
from workers.app import app
from workers.heartbeat import LeaseHeartbeat
from workers.runtime import worker_dispatcher, worker_runtime

if TYPE_CHECKING:
    from celery import Task as CeleryTask
    from sqlalchemy.orm import Session

    from octoprov.context import TaskContext

log = logging.getLogger(__name__)
SWEEP_LIMIT = 200  # tasks queued again per run of the periodic job, at most: a big outage drains over a few runs
INFRA_RETRY_MAX_S = 60  # the longest wait between two tries of a step the database or broker interrupted


@app.task(name="octoprov.step", bind=True, max_retries=None)  # type: ignore[untyped-decorator]  # celery: untyped
def run_step(self: CeleryTask, task_id: int, name: str, resume: int | None = None, done: str | None = None,
             failure: str | None = None, takeover: bool = False, then: list[str] | None = None) -> str:
    """Run one work step, then the work steps ``then`` names: a run of consecutive work steps is one
    message, delivered once and acting on one loaded context. The other keyword arguments are set only on
    this task's own retries: ``resume``, the attempt whose claim an infrastructure error interrupted
    (taken back), with the step's outcome when its action had ended (``done``, its detail, or
    ``failure``) so the action does not run twice; ``takeover`` when the step's owner stopped renewing
    its lease and this message waits it out. A step that fails, is retried or is not this worker's to
    run ends the run (its retry carries the rest).

    A delivery holds its message unacknowledged, and the broker delivers a message again once its
    visibility timeout passes; so a run that has taken a quarter of that hands the rest to a new message
    (as a chain would), and only a run of quick steps is one delivery."""
    names = [name, *(then or [])]
    ctx: TaskContext | None = None
    claimed: pipeline.Claim | None = None
    detail = ""
    hand_over_at = time.monotonic() + worker_runtime().settings.broker_visibility_timeout_s / 4
    for index, step in enumerate(names):
        first = index == 0
        if ctx is not None and claimed is None and time.monotonic() > hand_over_at:
            worker_dispatcher().run_steps(task_id, ctx.target_type, names[index:])  # unsent: the sweeper sends it
            return detail
        run = StepRun(self, task_id, step, names[index + 1:], resume=resume if first else None,
                      detail=done if first else None, failure=failure if first else None,
                      takeover=takeover and first, ctx=ctx, claimed=claimed, hand_over_at=hand_over_at)
        try:
            detail = run.execute()
        except (Ignore, Retry, Reject):
            raise
        except Exception as exc:
            if not is_infrastructure(exc):
                raise
            raise run.retry_later(exc) from None
        ctx, claimed = run.ctx, run.next_claim
    return detail


class StepRun:
    """One delivery of a step's message: claim, act under a renewed lease, record the outcome. An
    infrastructure error at any point is retried from where it struck (``retry_later``); only the
    action's own error fails the task. ``then``: the steps of the same run after this one, which every
    retry of this step carries on. ``ctx``: the context the run's previous step acted on, reused unless
    that step changed the task's machine. ``claimed``: this step's claim, taken when the previous step
    completed; ``hand_over_at``: the time (monotonic) after which this run claims no further step, as the
    rest goes to a new message."""

    def __init__(self, celery_task: CeleryTask, task_id: int, name: str, then: list[str], *, resume: int | None,
                 detail: str | None, failure: str | None, takeover: bool, ctx: TaskContext | None = None,
                 claimed: pipeline.Claim | None = None, hand_over_at: float = 0.0):
        self.celery_task, self.task_id, self.name, self.then = celery_task, task_id, name, then
        self.resume, self.detail, self.failure, self.takeover = resume, detail, failure, takeover
        self.claim: pipeline.Claim | None = claimed
        self.next_claim: pipeline.Claim | None = None  # the next step's, taken with this one's completion
        self.hand_over_at = hand_over_at
        self.ctx = ctx
        self.runtime = worker_runtime()
        self.lease_s = self.runtime.settings.step_lease_s

    def execute(self) -> str:
        claim = self.claim
        if claim is None:
            with self.runtime.database.session() as session:
                taken = pipeline.claim(session, self.task_id, self.name, self.lease_s, resume=self.resume)
                if isinstance(taken, str):
                    return self._not_claimed(session, taken)
                claim = self.ctx_for(session, taken)
        else:
            claim = self.ctx_for(None, claim)
        ctx = self.ctx
        assert ctx is not None
        self.claim = claim
        if self.detail is None and self.failure is None:
            with LeaseHeartbeat(self.runtime.database, self.task_id, self.name, claim.attempt, self.lease_s):
                self._act(ctx, claim)
        if self.failure is not None:
            self._fail(ctx.target_type, self.failure)
        return self._complete(self.detail or "")

    def ctx_for(self, session: Session | None, claim: pipeline.Claim) -> pipeline.Claim:
        """The context the step acts on: the run's, or loaded anew (in ``session``, else a session of its
        own) when there is none or the claim found another machine on the task than the context knows."""
        if self.ctx is not None and claim.machine == (self.ctx.mac_address, self.ctx.machine_ref):
            return claim
        if self.ctx is not None:
            self.ctx = with_machine(self.ctx, *claim.machine)
            if self.ctx is not None:
                return claim
        if session is None:
            with self.runtime.database.session() as own:
                return self.ctx_for(own, claim)
        self.ctx = load_context(session, self.task_id, self.runtime.settings, self.runtime.database,
                                self.runtime.vault)
        return claim

    def _retry(self, countdown: float, throw: bool = True, **kwargs: Any) -> Retry:
        """This step's message again in ``countdown`` seconds, with the rest of its run."""
        retry: Retry = self.celery_task.retry(args=(self.task_id, self.name), kwargs={**kwargs, "then": self.then},
                                              countdown=countdown, throw=throw)
        return retry

    def _not_claimed(self, session: Session, reason: str) -> str:
        if reason == pipeline.ALREADY_DONE and not self.takeover:
            return reason  # a redelivered message: the run goes on to the next (idempotent) step
        if reason == pipeline.TAKEN:
            left = pipeline.lease_left_s(session, self.task_id, self.name)
            if left is not None and left < self.lease_s / 2:  # its owner stopped renewing it: wait it out, take over
                raise self._retry(max(0.0, left) + 1, takeover=True)
        # the task ended, a live worker owns the step and continues the run, or it finished what we waited for
        raise Ignore()

    def _act(self, ctx: TaskContext, claim: pipeline.Claim) -> None:
        """Run the action: its detail, or the failure a domain error gives; a transient error is retried."""
        settings = self.runtime.settings
        try:
            target = target_for(ctx.target_type)
            if target.before_step:
                target.before_step(ctx, self.name)
            self.detail = run_action(self.name, target, ctx)
        except Cancelled:
            log.info("task %s: %s stopped, task cancelled", self.task_id, self.name)
            raise Ignore() from None
        except TransientError as exc:
            if claim.attempt > settings.step_retries:
                self.failure = f"{exc} (gave up after {claim.attempt} attempts)"
                return
            countdown = settings.step_retry_base_s * 2 ** (claim.attempt - 1)
            with self.runtime.database.session() as session:
                pipeline.release(session, self.task_id, self.name, str(exc), retry_in_s=countdown)
            raise self._retry(countdown) from None
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            if not isinstance(exc, OctoprovError):
                log.exception("task %s: step %s crashed", self.task_id, self.name)
            self.failure = exc.message if isinstance(exc, OctoprovError) else f"{type(exc).__name__}: {exc}"

    def _fail(self, target_type: str, message: str) -> NoReturn:
        with self.runtime.database.session() as session:
            failed = pipeline.fail(session, self.task_id, self.name, message)
        if failed:
            _after_failure(self.task_id, target_type)
        raise Ignore()

    def _complete(self, detail: str) -> str:
        assert self.claim is not None
        claim_next = self.then[0] if self.then and time.monotonic() < self.hand_over_at else None
        with self.runtime.database.session() as session:
            completed = pipeline.complete(session, self.runtime.settings, self.task_id, self.name, detail,
                                          attempt=self.claim.attempt, claim_next=claim_next, lease_s=self.lease_s)
        if completed is None:  # cancelled meanwhile, or taken over after a lease this worker could not renew
            raise Ignore()
        log.info("task %s: %s done by %s", self.task_id, self.name, self.celery_task.request.hostname)
        self.next_claim = completed.claimed
        assert self.ctx is not None
        if completed.task_completed and webhooks.any_to_call(self.runtime.settings, self.ctx.spec.options.webhooks):
            send_unless_unreachable(self.task_id, "notify", lambda: worker_dispatcher().notify(self.task_id))
        return detail

    def retry_later(self, exc: BaseException) -> Retry:
        """This message again after a backoff, taking back this claim and keeping an outcome already known.
        When even that cannot be sent, the periodic job queues the step again once its lease runs out."""
        resume = self.claim.attempt if self.claim is not None else self.resume
        countdown = min(INFRA_RETRY_MAX_S, 2 ** min(self.celery_task.request.retries or 0, 6))
        log.warning("task %s: %s interrupted (%s: %s); trying again in %s s", self.task_id, self.name,
                    type(exc).__name__, exc, countdown)
        return self._retry(countdown, throw=False, resume=resume, done=self.detail, failure=self.failure)


def _after_failure(task_id: int, target_type: str) -> None:
    """The rollback of a failed task (or its notification when it keeps its machine). A rollback that
    cannot be sent now is sent by the periodic job: the failure recorded it as due."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        keep = pipeline.keeps_machine(session, session.get_one(Task, task_id))
        if keep:
            pipeline.log(session, task_id, "Rollback skipped: the request asked to keep the machine", step="rollback")
    send_unless_unreachable(task_id, "rollback", lambda: worker_dispatcher().after_failure(task_id, target_type, keep))


@app.task(name="octoprov.rollback")  # type: ignore[untyped-decorator]  # celery: untyped
def rollback(task_id: int) -> list[str]:
    """Remove everything the task created: machine, boot configuration, computer account."""
    runtime = worker_runtime()
    with runtime.database.session() as session:
        task = session.get_one(Task, task_id)
        if task.status not in (states.FAILED, states.CANCELLED):  # retried meanwhile: its machine is in use again
            task.rollback_due_at = None
            return [f"nothing rolled back: the task is {task.status}"]
        ctx = load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)
        had_account = task.domain_join_blob is not None
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
        task.rollback_due_at = None
        for line in done:
            pipeline.log(session, task_id, f"Rollback: {line}", step="rollback")
    send_unless_unreachable(task_id, "notify", lambda: worker_dispatcher().notify(task_id))
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
    """Periodic: fail (and roll back) tasks whose wait step's deadline passed; queue again the work
    nothing runs (a lost message, a lost worker, a broker that was down) and the rollbacks that did
    not run. Queuing twice is harmless: the claim decides who runs a step."""
    runtime = worker_runtime()
    grace = runtime.settings.requeue_after_s
    with runtime.database.session() as session:
        expired = pipeline.expire_deadlines(session)
        kinds = {task.id: task.target_type for task in session.query(Task).filter(Task.id.in_(expired))}
    for task_id in expired:
        _after_failure(task_id, kinds[task_id])
    with runtime.database.session() as session:
        lost = pipeline.lost_work(session, grace, SWEEP_LIMIT)
    for work in lost:
        log.warning("task %s: %s re-queued after %s", work.task_id, work.steps[0], work.reason)
        worker_dispatcher().run_steps(work.task_id, work.target_type, work.steps)
    with runtime.database.session() as session:
        rollbacks = pipeline.rollbacks_due(session, grace, SWEEP_LIMIT)
    for task_id, target_type in rollbacks:
        log.warning("task %s: rollback re-queued: it had not run", task_id)
        worker_dispatcher().rollback(task_id, target_type)
    return expired


@app.task(name="octoprov.notify_task")  # type: ignore[untyped-decorator]  # celery: untyped
def notify_task(task_id: int) -> list[str]:
    """Fan a finished task out to its webhooks."""
    from workers.notify import enqueue_notifications

    runtime = worker_runtime()
    with runtime.database.session() as session:
        task = session.get_one(Task, task_id)
        return enqueue_notifications(app, runtime.settings, task)
