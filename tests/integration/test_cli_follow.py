"""How `octoprov task watch` reads a task (cli/watch.py), on a real database: it reads on while there
is more log than one reading holds, waits only when nothing is left, and stops at a final state."""

from __future__ import annotations

import io

import pytest

from cli import watch
from octoprov import pipeline, states, steps
from octoprov.errors import NotFound
from octoprov.models import Task
from tests.conftest import sqlite_database


@pytest.fixture
def database(settings):
    yield from sqlite_database(settings)


def _task(database, entries: int) -> int:
    with database.session() as session:
        task = Task(hostname="FOLLOW-01", target_type="fake", status=states.PENDING, current_step="Create VM")
        session.add(task)
        session.flush()
        pipeline.add_steps(session, task.id, [steps.StepDef("create_vm", "Create VM", steps.WORK, states.CREATING_VM),
                                           steps.StepDef("finish", "Finish", steps.WORK, states.CONFIGURING)])
        for number in range(entries):
            pipeline.log(session, task.id, f"entry {number}")
        return task.id


def test_a_long_log_is_read_in_batches_without_waiting_and_a_final_task_ends_the_following(database):
    task_id = _task(database, watch.LOG_BATCH + 20)
    with database.session() as session:
        assert states.transition(session, task_id, states.CANCELLED)
    waits: list[float] = []
    readings = list(watch.follow(database, task_id, after=0, sleep=waits.append))
    assert [len(r.new_logs) for r in readings] == [watch.LOG_BATCH, 20]
    assert waits == []
    assert readings[-1].final and readings[-1].status == states.CANCELLED
    assert [entry.message for r in readings for entry in r.new_logs][-1] == f"entry {watch.LOG_BATCH + 19}"


def test_following_waits_while_nothing_changes_and_sees_the_entry_written_with_the_last_change(database):
    task_id = _task(database, 30)

    waits: list[float] = []

    def meanwhile(seconds: float) -> None:  # stands in for the interval: the task moves on meanwhile
        waits.append(seconds)
        with database.session() as session:
            if len(waits) == 1:
                assert states.transition(session, task_id, states.CREATING_VM)
            elif len(waits) == 3:
                assert states.transition(session, task_id, states.FAILED, error_message="Create VM: broken")
                pipeline.log(session, task_id, "Create VM failed: broken", level="error")

    readings = list(watch.follow(database, task_id, tail=5, interval=0.7, sleep=meanwhile))
    assert [r.status for r in readings] == ["pending", "creating_vm", "creating_vm", "failed"]
    assert [e.message for e in readings[0].new_logs] == [f"entry {n}" for n in range(25, 30)]
    assert [e.message for e in readings[-1].new_logs] == ["Create VM failed: broken"]
    assert waits == [0.7, 0.7, 0.7]

    out = io.StringIO()
    code = watch.watch(database, task_id, watch.PlainRenderer(out), tail=1)
    assert code == watch.EXIT_CODES[states.FAILED] == 1
    assert out.getvalue().splitlines()[-1] == f"task {task_id} (FOLLOW-01) failed: Create VM: broken"
    assert "\x1b" not in out.getvalue()

    with pytest.raises(NotFound):
        next(watch.follow(database, 424242))
