"""Completing a work step takes the run's next step in the same transaction: the worker's run of steps
then needs one round trip per step. Only the named, pending work step that follows is taken; a wait step
that follows is activated as before; a task that ended meanwhile keeps its steps as they were.

On both databases (the conftest's ``database`` fixture), with the real Flask app creating the task and
``octoprov.pipeline`` driving the steps as a worker would; nothing is queued or delivered.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from api.runtime import DISPATCH
from octoprov import pipeline, states
from octoprov.models import Task, TaskStep
from tests.support.inline_pipeline import InlineQueue
from tests.support.library import created

FIRST_RUN = ["create_vm", "render_answers", "register_mac", "power_on"]  # work steps before the first wait


@pytest.fixture
def task_id(app, client, settings) -> int:
    app.extensions[DISPATCH] = InlineQueue()  # records, never delivers
    (settings.effective_images_dir / "install.wim").write_bytes(b"wim")
    image = created(client, "images", {"name": "WS2025", "osType": "windows", "imagePath": "install.wim"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    return int(created(client, "tasks", {"hostname": "CN-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                         "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                         "os": {"imageId": image["id"]}})["id"])


def statuses(runtime, task_id: int) -> dict[str, tuple[str, int]]:
    with runtime.database.session() as session:
        return {name: (status, attempts) for name, status, attempts in session.execute(
            select(TaskStep.name, TaskStep.status, TaskStep.attempts).where(TaskStep.task_id == task_id))}


def test_a_run_of_work_steps_claims_each_next_step_with_the_completion(runtime, task_id):
    with runtime.database.session() as session:
        claim = pipeline.claim(session, task_id, FIRST_RUN[0], 60)
    assert isinstance(claim, pipeline.Claim)
    for name, following in zip(FIRST_RUN, [*FIRST_RUN[1:], None], strict=True):
        with runtime.database.session() as session:
            done = pipeline.complete(session, runtime.settings, task_id, name, "done", attempt=claim.attempt,
                                     claim_next=following, lease_s=60)
        assert done is not None and not done.task_completed
        if following is None:
            assert done.claimed is None
            break
        assert done.claimed is not None and (done.claimed.step, done.claimed.attempt) == (following, 1)
        assert statuses(runtime, task_id)[following] == ("running", 1)
        claim = done.claimed
    after = statuses(runtime, task_id)
    assert all(after[name] == ("done", 1) for name in FIRST_RUN)
    assert after["installer_started"][0] == "running"  # the wait step that follows was activated
    with runtime.database.session() as session:
        task = session.get_one(Task, task_id)
        assert task.status == states.BOOTING and task.progress_percent > 0


def test_only_the_named_pending_work_step_is_claimed(runtime, task_id):
    with runtime.database.session() as session:
        pipeline.claim(session, task_id, "create_vm", 60)
        done = pipeline.complete(session, runtime.settings, task_id, "create_vm", "done", claim_next="power_on",
                                 lease_s=60)  # not the step that follows
    assert done is not None and done.claimed is None
    assert statuses(runtime, task_id)["render_answers"] == ("pending", 0)
    assert statuses(runtime, task_id)["power_on"] == ("pending", 0)


def test_a_task_cancelled_meanwhile_keeps_its_next_step_unclaimed(runtime, task_id):
    with runtime.database.session() as session:
        pipeline.claim(session, task_id, "create_vm", 60)
    with runtime.database.session() as session:
        pipeline.cancel(session, task_id)
    with runtime.database.session() as session:
        done = pipeline.complete(session, runtime.settings, task_id, "create_vm", "done",
                                 claim_next="render_answers", lease_s=60)
    assert done is None  # cancelling stopped the running step: nothing of this worker's to complete
    assert statuses(runtime, task_id)["render_answers"] == ("cancelled", 0)


def test_a_claim_the_task_cannot_follow_is_given_back_and_the_completion_kept(runtime, task_id):
    """The next step's phase is one the task cannot enter (it moved on meanwhile, here set by hand): the
    step taken is made pending again by a statement, and the completion in the same transaction stays."""
    with runtime.database.session() as session:
        pipeline.claim(session, task_id, "create_vm", 60)
    with runtime.database.session() as session:
        session.execute(states.TASKS.update().where(states.TASKS.c.id == task_id)
                        .values(status=states.CONFIGURING))
    with runtime.database.session() as session:
        done = pipeline.complete(session, runtime.settings, task_id, "create_vm", "done",
                                 claim_next="render_answers", lease_s=60)
    assert done is not None and done.claimed is None
    after = statuses(runtime, task_id)
    assert after["create_vm"] == ("done", 1)
    assert after["render_answers"] == ("pending", 0)
