"""No task is ever lost: each way a task's work could stop for good, staged on the real API, Redis,
PostgreSQL and Celery workers with the fake target. A lost message is staged as what it leaves behind:
the broker's queue emptied (a Redis restarted without persistence, a worker killed between taking a
message and recording it) and the step rows as the dead worker left them."""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from sqlalchemy import update

from octoprov import pipeline
from octoprov.models import Task, TaskStep, utcnow
from octoprov.targets.fake import events
from tests.support.stack import Stack, flush_redis, start_stack

# the periodic job every second, and lost work queued again after a second with nothing running it
QUICK_SWEEP = {"deadline_check_s": 1, "requeue_after_s": 1}


def actions(stack: Stack, task_id: int) -> list[str]:
    return [event["action"] for event in events(stack.data_dir) if event["task"] == task_id]


def attempts(stack: Stack, task_id: int) -> dict[str, int]:
    """How often each work step was claimed."""
    database = stack.database
    try:
        with database.session() as session:
            return {step.name: step.attempts for step in pipeline.step_rows(session, task_id) if step.kind == "work"}
    finally:
        database.dispose()


def set_step(stack: Stack, task_id: int, name: str, **values) -> None:
    database = stack.database
    try:
        with database.session() as session:
            session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name == name)
                            .values(**values))
            if values.get("status") in (pipeline.StepStatus.RUNNING, pipeline.StepStatus.DONE):
                phase = session.get_one(Task, task_id).steps[0].phase
                session.execute(update(Task).where(Task.id == task_id).values(status=phase, started_at=utcnow()))
    finally:
        database.dispose()


def lose_the_queue(stack: Stack) -> None:
    redis.Redis.from_url(stack.env["OCTOPROV_BROKER_URL"]).flushdb()


def parked_task(stack: Stack, **node) -> int:
    """A task stored and queued while no worker runs, whose queued message is then lost."""
    task_id = stack.task(stack.fake_node("LOST", **node), stack.image(), hostname="LOST-01")["id"]
    lose_the_queue(stack)
    return task_id


def test_a_step_whose_message_was_lost_after_the_one_before_is_queued_again(tmp_path, postgres_server, redis_url):
    """The first step done, the message of the next one lost: the periodic job sends it again."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, **QUICK_SWEEP)
    try:
        task_id = parked_task(stack)
        set_step(stack, task_id, "create_vm", status=pipeline.StepStatus.DONE, attempts=1,
                 finished_at=utcnow() - timedelta(seconds=5))
        stack.start_worker(concurrency=2)
        stack.start_beat()
        done = stack.wait_for(task_id, {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed", done
        logs = [entry["message"] for entry in stack.call("GET", f"/tasks/{task_id}/logs", 200).json()]
        assert any("queued again after" in line and "without a worker taking it" in line for line in logs), logs
        assert "create" not in actions(stack, task_id)  # the step already done is not run again
    finally:
        stack.stop()


def test_a_step_whose_worker_died_with_its_message_is_taken_over(tmp_path, postgres_server, redis_url):
    """A worker claimed the first step and died; its message is gone too: the step runs once its lease ran out."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, **QUICK_SWEEP)
    try:
        task_id = parked_task(stack)
        set_step(stack, task_id, "create_vm", status=pipeline.StepStatus.RUNNING, attempts=1,
                 started_at=utcnow() - timedelta(seconds=30), lease_until=utcnow() - timedelta(seconds=2))
        stack.start_worker(concurrency=2)
        stack.start_beat()
        done = stack.wait_for(task_id, {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed", done
        assert actions(stack, task_id).count("create") == 1
        assert attempts(stack, task_id)["create_vm"] == 2
    finally:
        stack.stop()


def test_a_redelivery_just_before_a_dead_owners_lease_ends_takes_the_step_over(tmp_path, postgres_server,
                                                                                redis_url):
    """The broker delivers a dead worker's message again a moment before the step's lease runs out (the
    visibility timeout counts from delivery, the lease from the claim): it waits the lease out and takes
    the step over instead of dropping the chain. No periodic job runs here: the message alone must do it."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url)
    try:
        task_id = stack.task(stack.fake_node("RACE"), stack.image(), hostname="RACE-01")["id"]  # its message waits
        set_step(stack, task_id, "create_vm", status=pipeline.StepStatus.RUNNING, attempts=1, started_at=utcnow(),
                 lease_until=utcnow() + timedelta(seconds=3))
        stack.start_worker(concurrency=2)
        done = stack.wait_for(task_id, {"completed", "failed"}, timeout=60)
        assert done["status"] == "completed", done
        assert actions(stack, task_id).count("create") == 1
    finally:
        stack.stop()


def test_a_long_step_of_a_live_worker_is_never_taken_over(tmp_path, postgres_server, redis_url):
    """Steps of 3 s under a 2 s lease, with the broker delivering every message again after 2 s to a
    second worker: the heartbeat keeps each lease, so no step runs twice."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, step_lease_s=2, broker_visibility_timeout_s=2)
    try:
        stack.start_worker(concurrency=2)
        stack.start_worker(concurrency=2)
        task_id = stack.task(stack.fake_node("LONG", delayS=3.0), stack.image(), hostname="LONG-01")["id"]
        stack.wait_step(task_id, "power_on", "done", timeout=120)
        ran = actions(stack, task_id)
        assert ran.count("create") == 1 and ran.count("power_on") == 1, ran
        claims = attempts(stack, task_id)
        assert claims["create_vm"] == claims["power_on"] == 1, claims
    finally:
        stack.stop()


def test_a_rollback_that_could_not_be_sent_runs_later(tmp_path, postgres_server, redis_url):
    """A task failed while the broker was away, so its rollback was never queued: the periodic job sends it."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, **QUICK_SWEEP)
    try:
        worker = stack.start_worker(concurrency=2)
        task_id = stack.task(stack.fake_node("GONE", callbacks=False), stack.image(), hostname="GONE-01")["id"]
        stack.wait_step(task_id, "installer_started", "running", timeout=60)
        stack.kill(worker)
        database = stack.database
        try:
            with database.session() as session:  # what the deadline check records; its rollback message is lost
                assert pipeline.fail(session, task_id, "installer_started", "timed out (staged)")
        finally:
            database.dispose()
        assert "destroy" not in actions(stack, task_id)
        stack.start_worker(concurrency=2)
        stack.start_beat()
        deadline = time.monotonic() + 60
        while "destroy" not in actions(stack, task_id):
            assert time.monotonic() < deadline, actions(stack, task_id)
            time.sleep(0.3)
        logs = [entry["message"] for entry in stack.call("GET", f"/tasks/{task_id}/logs", 200).json()]
        assert "Rollback queued again: it had not run" in logs
        database = stack.database
        try:
            with database.session() as session:
                assert session.get_one(Task, task_id).rollback_due_at is None
        finally:
            database.dispose()
    finally:
        stack.stop()
