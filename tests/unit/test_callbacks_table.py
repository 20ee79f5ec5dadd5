"""Status callbacks, one table row per situation a machine's report can meet: each row posts its
earlier reports, then one more, and checks the HTTP answer, the steps and task afterwards, and what
the API would have queued.

Fast on purpose: SQLite only, the real Flask app and ``POST /pxe/status``, and no broker or worker.
The work steps before the first wait step are marked done with ``octoprov.pipeline`` as a worker
would (claim, complete), without running the fake target's actions; the dispatcher is the recording
``InlineQueue`` of the Hyper-V pipeline tests, never delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy

from api.runtime import DISPATCH
from octoprov import pipeline
from octoprov.models import Task
from tests.conftest import sqlite_database
from tests.support.inline_pipeline import InlineQueue
from tests.support.library import API, created

STATUS = f"{API}/pxe/status"
FIRST_RUN = ["create_vm", "render_answers", "register_mac", "power_on"]  # work steps before the first wait
WAITS = ("installer_started", "os_install", "first_boot")  # the wait steps, in order
AFTER = ["install_agent", "finish"]  # work steps after the last wait
RIGHT, WRONG = "right", "wrong"
KNOWN, UNKNOWN = "known", "unknown"


@pytest.fixture
def database(settings):
    """SQLite only (overrides the conftest fixture that also runs each test on PostgreSQL)."""
    yield from sqlite_database(settings)


@pytest.fixture
def queue(app) -> InlineQueue:
    """Records what the API would send to the broker; nothing is delivered."""
    recorder = InlineQueue()
    app.extensions[DISPATCH] = recorder
    return recorder


@dataclass(frozen=True)
class Row:
    name: str
    before: tuple[tuple[str, str], ...]  # (event, status) reports posted first, with the right token
    event: str
    status: str
    token: str  # RIGHT or WRONG
    task: str  # KNOWN, or UNKNOWN: an id no task has
    code: int
    answer: dict | str  # the JSON answer, or a text the error message contains
    waits: tuple[str, str, str]  # the statuses of WAITS afterwards
    task_status: str
    queued: tuple[str, ...]  # "chain" (the work steps after the last wait) or "rollback", in order


ROWS = [
    Row("first-event", (), "installer_started", "ok", RIGHT, KNOWN,
        200, {"accepted": True, "reason": "step completed"},
        ("done", "running", "pending"), "installing", ()),
    Row("duplicate", (("installer_started", "ok"),), "installer_started", "ok", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "duplicate"},
        ("done", "running", "pending"), "installing", ()),
    Row("out-of-order", (), "first_boot", "ok", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "out of order"},
        ("running", "pending", "pending"), "booting", ()),
    Row("final-event", (("installer_started", "ok"), ("os_installed", "ok")), "first_boot", "ok", RIGHT, KNOWN,
        200, {"accepted": True, "reason": "step completed"},
        ("done", "done", "done"), "installing", ("chain",)),
    Row("duplicate-final-event", (("installer_started", "ok"), ("os_installed", "ok"), ("first_boot", "ok")),
        "first_boot", "ok", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "duplicate"},
        ("done", "done", "done"), "installing", ()),
    Row("event-no-step-waits-for", (), "domain_joined", "ok", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "no step waits for this event"},
        ("running", "pending", "pending"), "booting", ()),
    Row("progress", (), "progress", "ok", RIGHT, KNOWN,
        200, {"accepted": True, "reason": "progress recorded"},
        ("running", "pending", "pending"), "booting", ()),
    Row("wrong-token", (), "installer_started", "ok", WRONG, KNOWN,
        403, "the callback token does not belong to this task",
        ("running", "pending", "pending"), "booting", ()),
    Row("unknown-task", (), "installer_started", "ok", RIGHT, UNKNOWN,
        404, "no task with id",
        ("running", "pending", "pending"), "booting", ()),
    Row("failed-status", (("installer_started", "ok"),), "os_installed", "failed", RIGHT, KNOWN,
        200, {"accepted": True, "reason": "failed"},
        ("done", "failed", "pending"), "failed", ("rollback",)),
    Row("failed-status-out-of-order", (), "os_installed", "failed", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "out of order"},
        ("running", "pending", "pending"), "booting", ()),
    Row("report-after-failure", (("installer_started", "failed"),), "os_installed", "ok", RIGHT, KNOWN,
        200, {"accepted": False, "reason": "task is failed"},  # and no second rollback
        ("failed", "pending", "pending"), "failed", ()),
]


def start_task(client, settings, runtime, queue: InlineQueue) -> tuple[int, str]:
    """A Windows task on a fake node, its first work steps done as the worker would mark them: its
    first wait step (installer_started) is running. Returns its id and callback token."""
    (settings.effective_images_dir / "install.wim").write_bytes(b"wim")
    image = created(client, "images", {"name": "WS2025", "osType": "windows", "imagePath": "install.wim"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    task = created(client, "tasks", {"hostname": "CB-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                     "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                     "os": {"imageId": image["id"]}})
    task_id = task["id"]
    assert list(queue.messages) == [("chain", task_id, FIRST_RUN)]
    queue.messages.clear()
    with runtime.database.session() as session:
        for name in FIRST_RUN:
            assert pipeline.claim(session, task_id, name, 60).step == name
            assert pipeline.complete(session, runtime.settings, task_id, name, "done in the test")
        token = runtime.vault.decrypt(session.get(Task, task_id).callback_token_encrypted)
    return task_id, token


def post(client, task_id: int, token: str, event: str, status: str):
    return client.post(STATUS, json={"taskId": task_id, "token": token, "event": event, "status": status,
                                     "message": f"{event} {status} from the table"})


def steps_and_status(client, task_id: int) -> tuple[dict[str, str], str]:
    view = client.get(f"{API}/tasks/{task_id}").json
    return {step["name"]: step["status"] for step in view["steps"]}, view["status"]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_status_callback(client, settings, runtime, queue, row: Row):
    task_id, token = start_task(client, settings, runtime, queue)
    steps, status = steps_and_status(client, task_id)
    assert list(steps) == [*FIRST_RUN, *WAITS, *AFTER]
    assert [steps[name] for name in WAITS] == ["running", "pending", "pending"] and status == "booting"
    for event, event_status in row.before:
        earlier = post(client, task_id, token, event, event_status)
        assert earlier.status_code == 200 and earlier.json["accepted"], (event, earlier.json)
    queue.messages.clear()

    response = post(client, task_id if row.task == KNOWN else task_id + 1000,
                    token if row.token == RIGHT else token[::-1], row.event, row.status)

    assert response.status_code == row.code, response.json
    if isinstance(row.answer, dict):
        assert response.json == row.answer
    else:
        assert row.answer in response.json["message"], response.json
    steps, status = steps_and_status(client, task_id)
    assert steps == {**dict.fromkeys(FIRST_RUN, "done"), **dict(zip(WAITS, row.waits, strict=True)),
                     **dict.fromkeys(AFTER, "pending")}
    assert status == row.task_status
    expected = [("chain", task_id, AFTER) if kind == "chain" else (kind, task_id) for kind in row.queued]
    assert list(queue.messages) == expected
    assert queue.delivered == []  # no notification: nothing completed, and a rollback notifies itself


def test_each_report_reads_once_and_writes_only_what_it_changes(client, settings, runtime, queue):
    """The hot path of every machine: one read of the task with its steps, then the log line, the step
    completed, the task's phase, the wait step activated with its log line, and the progress."""
    task_id, token = start_task(client, settings, runtime, queue)
    sent: list[str] = []

    def count(_connection, _cursor, statement, *_rest) -> None:
        sent.append(statement)

    sqlalchemy.event.listen(runtime.database.engine, "before_cursor_execute", count)
    try:
        for reported, most in (("installer_started", 7), ("os_installed", 6), ("first_boot", 4)):
            sent.clear()
            assert post(client, task_id, token, reported, "ok").json["accepted"]
            assert len(sent) <= most, (reported, sent)
    finally:
        sqlalchemy.event.remove(runtime.database.engine, "before_cursor_execute", count)
