"""A machine is stored on its task unless another active task holds its MAC (octoprov/actions.py): two tasks
booting one network card would hand each other's answers out. Both databases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.exc import NoResultFound

from octoprov.actions import record_machine
from octoprov.errors import PermanentError
from octoprov.models import Task
from octoprov.targets.base import Machine

MAC = "52:54:00:00:0a:01"


def _task(database, status: str, mac: str | None = None) -> int:
    with database.session() as session:
        task = Task(hostname=f"host-{status}", target_type="fake", status=status, config={}, mac_address=mac)
        session.add(task)
        session.flush()
        return task.id


def _machine() -> Machine:
    return Machine(ref="vm-1", mac_address=MAC, detail="created")


def test_a_machine_is_stored_on_its_task(database):
    task_id = _task(database, "creating_vm")
    _task(database, "completed", MAC)  # a task that ended holds its MAC no more
    record_machine(SimpleNamespace(database=database, task_id=task_id), _machine())
    with database.session() as session:
        task = session.get_one(Task, task_id)
        assert (task.mac_address, task.machine_ref) == (MAC, "vm-1")


def test_a_mac_another_active_task_holds_is_refused_and_named(database):
    holder = _task(database, "installing", MAC)
    task_id = _task(database, "creating_vm")
    with pytest.raises(PermanentError, match=f"already registered to task {holder}"):
        record_machine(SimpleNamespace(database=database, task_id=task_id), _machine())
    with database.session() as session:
        assert session.get_one(Task, task_id).mac_address is None


def test_a_task_that_is_gone_says_so(database):
    with pytest.raises(NoResultFound):
        record_machine(SimpleNamespace(database=database, task_id=999_999), _machine())
