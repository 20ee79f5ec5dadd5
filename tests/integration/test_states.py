"""The task state machine: the drawn diagram is current, the declared machine has the properties the
workers rely on, and ``transition`` is one conditional UPDATE that only one writer can win."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from octoprov import states
from octoprov.models import Task
from octoprov.statediagram import markdown, mermaid
from tests.support import ROOT

DOCS = ROOT / "docs" / "states.md"


def test_docs_page_is_current():
    assert DOCS.read_text() == markdown(), "docs/states.md is stale: run `make states`"


def test_diagram_has_every_transition_once():
    diagram = mermaid()
    edges = [tuple(line.strip().split(" --> ")) for line in diagram.splitlines() if " --> " in line]
    declared = [(source, target) for source, targets in states.TRANSITIONS.items() for target in targets]
    ends = [(state, "[*]") for state in states.FINAL]
    assert sorted(edges) == sorted([("[*]", states.PENDING), *declared, *ends])
    for state, description in states.DESCRIPTIONS.items():
        assert f'state "{state}: {description}" as {state}' in diagram


def test_every_state_is_declared_and_described():
    assert set(states.TRANSITIONS) == set(states.ALL) == set(states.DESCRIPTIONS)
    assert all(targets <= set(states.ALL) for targets in states.TRANSITIONS.values())


@pytest.mark.parametrize("state", sorted(states.ACTIVE))
def test_every_active_state_can_fail_and_be_cancelled(state):
    assert {states.FAILED, states.CANCELLED} <= states.TRANSITIONS[state]


@pytest.mark.parametrize("state", [states.COMPLETED, states.CANCELLED])
def test_completed_and_cancelled_are_dead_ends(state):
    assert state in states.FINAL
    assert states.TRANSITIONS[state] == frozenset()


def test_every_state_is_reachable_from_pending():
    seen, todo = {states.PENDING}, [states.PENDING]
    while todo:
        for target in states.TRANSITIONS[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    assert seen == set(states.ALL)


# -- transition(): one conditional UPDATE, against SQLite and PostgreSQL ---------------------------------


def _task(database, status: str = states.PENDING) -> int:
    with database.session() as session:
        task = Task(hostname="STATE-TEST-01", target_type="kvm", status=status)
        session.add(task)
        session.flush()
        return task.id


def _row(database, task_id: int) -> tuple[str, object]:
    with database.session() as session:
        return session.execute(select(Task.status, Task.completed_at).where(Task.id == task_id)).one()


def test_allowed_transition_updates_the_row(database):
    task_id = _task(database)
    with database.session() as session:
        assert states.transition(session, task_id, states.CREATING_VM, current_step="create_vm") is True
    with database.session() as session:
        task = session.get(Task, task_id)
        assert (task.status, task.current_step, task.completed_at) == (states.CREATING_VM, "create_vm", None)


def test_entering_a_final_state_stamps_completed_at(database):
    task_id = _task(database, states.CONFIGURING)
    with database.session() as session:
        assert states.transition(session, task_id, states.COMPLETED)
    assert _row(database, task_id)[0] == states.COMPLETED
    assert _row(database, task_id)[1] is not None


@pytest.mark.parametrize(("start", "target"), [
    (states.COMPLETED, states.CREATING_VM),  # out of a dead end
    (states.PENDING, states.COMPLETED),  # skipping the steps
    (states.INSTALLING, states.BOOTING),  # backwards
    (states.CANCELLED, states.PENDING),  # only failed tasks are retried
])
def test_disallowed_transition_leaves_the_row_alone(database, start, target):
    task_id = _task(database, start)
    before = _row(database, task_id)
    with database.session() as session:
        assert states.transition(session, task_id, target) is False
    assert _row(database, task_id) == before


def test_unknown_state_is_refused(database):
    task_id = _task(database)
    with database.session() as session, pytest.raises(ValueError, match="unknown state"):
        states.transition(session, task_id, "exploded")
    assert _row(database, task_id)[0] == states.PENDING


def test_of_two_writers_only_one_moves_the_task(database):
    """Two workers pick up the same pending task: the second's UPDATE, run after the first committed,
    matches no row (SQLite allows one writer at a time, so the race is played out in sequence)."""
    task_id = _task(database)
    with database.session() as first, database.session() as second:
        assert states.transition(first, task_id, states.CREATING_VM, current_step="first") is True
        first.commit()
        assert states.transition(second, task_id, states.CREATING_VM, current_step="second") is False
    with database.session() as session:
        task = session.get(Task, task_id)
        assert (task.status, task.current_step) == (states.CREATING_VM, "first")


def test_cancel_and_failure_race_has_one_winner(database):
    """A cancel request and a failing step both end a running task: whichever commits first decides."""
    task_id = _task(database, states.INSTALLING)
    with database.session() as canceller, database.session() as worker:
        assert states.transition(canceller, task_id, states.CANCELLED) is True
        canceller.commit()
        assert states.transition(worker, task_id, states.FAILED, error_message="installer timed out") is False
    with database.session() as session:
        task = session.get(Task, task_id)
        assert (task.status, task.error_message) == (states.CANCELLED, None)
