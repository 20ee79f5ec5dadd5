"""Live streams (server-sent events): what a first connection gets, what a resumed one gets (everything it
missed, nothing twice), that every writer's changes arrive (the database's triggers number them), and that
a missing id is waited for. Through the real app on SQLite and PostgreSQL; the streams end after a second
in tests (conftest), so a test reads one whole."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from api.runtime import DISPATCH
from octoprov import events, pipeline, states
from octoprov.db import Database
from octoprov.models import Task, TaskEvent, TaskLog, utcnow
from tests.conftest import BACKENDS
from tests.support.inline_pipeline import InlineQueue
from tests.support.library import API, created
from tests.support.live import start_api_beside, start_live_api


def parse(text: str) -> list[dict]:
    """The events of a text/event-stream body: each as {"id", "event", "data"} (comments and retry left out)."""
    found = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields:
            found.append({"id": int(fields["id"]) if "id" in fields else None, "event": fields["event"],
                          "data": json.loads(fields["data"])})
    return found


def stream(client, path: str, last: int | None = None) -> list[dict]:
    response = client.get(API + path, headers={"Last-Event-ID": str(last)} if last is not None else {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    return parse(response.get_data(as_text=True))


@pytest.fixture
def task_id(app, client, settings) -> int:
    app.extensions[DISPATCH] = InlineQueue()  # queued steps stay queued: the test moves the task itself
    (settings.effective_images_dir / "root.img").write_bytes(b"img")
    image = created(client, "images", {"name": "Linux", "osType": "linux", "imagePath": "root.img"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    return created(client, "tasks", {"hostname": "live-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                     "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                     "os": {"imageId": image["id"]}})["id"]


def log_ids(database, task_id: int) -> list[int]:
    with database.session() as session:
        return list(session.scalars(select(TaskLog.id).where(TaskLog.task_id == task_id).order_by(TaskLog.id)))


def test_a_first_connection_gets_the_log_then_the_task_and_a_resumed_one_exactly_what_it_missed(
        client, database, runtime, task_id):
    first = stream(client, f"/tasks/{task_id}/events")
    assert [e["event"] for e in first] == ["log"] * len(log_ids(database, task_id)) + ["task"]
    assert [e["data"]["id"] for e in first[:-1]] == log_ids(database, task_id)
    assert all(e["id"] is None for e in first[:-1])  # only the snapshot's last event numbers it
    assert first[-1]["data"]["id"] == task_id and first[-1]["data"]["status"] == states.PENDING
    assert first[-1]["data"]["steps"], "the task event is the full TaskView"
    resume = first[-1]["id"]

    assert stream(client, f"/tasks/{task_id}/events", resume) == []  # nothing happened: nothing sent

    with database.session() as session:  # a worker's work: the step claimed, lines logged
        assert pipeline.claim(session, task_id, "create_vm", 60).step == "create_vm"
        pipeline.log(session, task_id, "line one", step="create_vm")
        pipeline.log(session, task_id, "line two", step="create_vm")
    missed = stream(client, f"/tasks/{task_id}/events", resume)
    lines = [e for e in missed if e["event"] == "log"]
    changes = [e for e in missed if e["event"] == "task"]
    assert [e["data"]["id"] for e in lines] == [i for i in log_ids(database, task_id) if i > first[-2]["data"]["id"]]
    assert [e["data"]["message"] for e in lines][-2:] == ["line one", "line two"]
    assert len(changes) == 1 and changes[0]["data"]["status"] == states.CREATING_VM  # one event per read
    ids = [e["id"] for e in missed]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > resume

    # resuming from the middle: what follows that point, once each
    middle = lines[0]["id"]
    assert [e["id"] for e in stream(client, f"/tasks/{task_id}/events", middle)] == [i for i in ids if i > middle]
    with database.session() as session:
        newest = session.scalar(select(func.max(TaskEvent.id)))
    assert stream(client, f"/tasks/{task_id}/events", newest) == []


def test_the_dashboard_stream_says_ready_then_sends_each_changed_task_once_as_its_summary(
        client, database, task_id):
    first = stream(client, "/events")
    assert [e["event"] for e in first] == ["ready"] and first[0]["id"] > 0
    with database.session() as session:
        assert states.transition(session, task_id, states.CANCELLED)
        pipeline.log(session, task_id, "a log line is no dashboard event")
    changed = stream(client, "/events", first[0]["id"])
    assert [(e["event"], e["data"]["id"], e["data"]["status"]) for e in changed] == [
        ("task", task_id, states.CANCELLED)]
    assert "steps" not in changed[0]["data"] and "config" not in changed[0]["data"]  # the summary, as lists show
    # the query parameter serves a first connection that already has a point
    assert client.get(f"{API}/events?lastEventId={first[0]['id']}").get_data(as_text=True).count("event: task") == 1


def test_a_missing_id_holds_the_stream_back_until_it_commits_or_its_grace_is_over(database, task_id):
    now = [100.0]
    horizon = events.Horizon(grace_s=5, clock=lambda: now[0])
    with database.session() as session:
        newest = session.scalar(select(func.max(TaskEvent.id)))
        assert horizon.advance(session) == newest
        # an id handed out to a transaction that has not committed yet: the next one is visible first
        session.add(TaskEvent(id=newest + 2, task_id=task_id, kind="task"))
    with database.session() as session:
        assert horizon.advance(session) == newest  # held back: newest + 1 may still come
        session.add(TaskEvent(id=newest + 1, task_id=task_id, kind="task"))
    with database.session() as session:
        assert horizon.advance(session) == newest + 2  # it came: both go out, in order
        session.add(TaskEvent(id=newest + 4, task_id=task_id, kind="task"))
    with database.session() as session:
        assert horizon.advance(session) == newest + 2
        now[0] += 4.9
        assert horizon.advance(session) == newest + 2
        now[0] += 0.2  # newest + 3 was rolled back: after the grace the stream goes on without it
        assert horizon.advance(session) == newest + 4


def test_a_resume_point_that_is_no_event_id_is_refused(client, task_id):
    for bad in ("abc", "-1", "99999999999"):
        response = client.get(f"{API}/tasks/{task_id}/events", headers={"Last-Event-ID": bad})
        assert response.status_code == 400 and "Last-Event-ID" in response.json["errors"], bad
    assert client.get(f"{API}/tasks/2147483000/events").status_code == 404


def test_streams_beyond_the_process_limit_are_answered_503_and_a_closed_one_frees_its_place(app, client, task_id):
    from api.streams import SLOTS, Slots

    app.extensions[SLOTS] = Slots(1)
    held = client.get(f"{API}/events", buffered=False)
    assert held.status_code == 200
    refused = client.get(f"{API}/tasks/{task_id}/events")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    held.close()
    assert client.get(f"{API}/tasks/{task_id}/events").status_code == 200


def test_every_kind_of_write_is_numbered_by_the_database(database, task_id):
    """The triggers: a task change, a step change and a log line each become an event, whoever writes them."""
    with database.session() as session:
        before = session.scalar(select(func.max(TaskEvent.id)))
        session.get_one(Task, task_id).current_step = "changed by hand"
        session.flush()
        pipeline.release(session, task_id, "create_vm", "nothing to release")  # no step row changes: no event
    with database.session() as session:
        kinds = session.execute(select(TaskEvent.kind, TaskEvent.log_id).where(TaskEvent.id > before)
                                .order_by(TaskEvent.id)).all()
        line = session.scalar(select(func.max(TaskLog.id)))
    assert [tuple(row) for row in kinds] == [("task", None), ("log", line)]


def test_old_events_are_pruned_and_recent_ones_kept(database, task_id):
    with database.session() as session:
        kept = session.scalar(select(func.count()).select_from(TaskEvent))
        session.add(TaskEvent(task_id=task_id, kind="task", at=utcnow() - timedelta(days=8)))
    with database.session() as session:
        assert events.prune(session, 7) == 1
        assert session.scalar(select(func.count()).select_from(TaskEvent)) == kept


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_change_made_through_one_api_process_is_streamed_by_another(backend, request, tmp_path):
    """Two API servers (two gunicorn processes each) on one database: a stream opened on the second one
    sees the task the first one created and cancels, and a line a third process (this test, as a worker
    would) logs; after a reconnection it gets only what came since."""
    url = request.getfixturevalue("postgres_server").create_database() if backend == "postgresql" else None
    first = start_live_api(tmp_path / "var", url, extra_env={"OCTOPROV_API_WORKERS": "2",
                                                             "OCTOPROV_EVENTS_MAX_STREAM_S": "2"})
    try:
        second = start_api_beside(first)
        try:
            def call(api, method, path, **kwargs):
                return requests.request(method, api.url + API + path, headers=api.headers, timeout=30, **kwargs)

            def follow(api, path, last=None) -> list[dict]:  # the server ends the stream after 2 s
                headers = {**api.headers, **({"Last-Event-ID": str(last)} if last is not None else {})}
                response = requests.get(api.url + API + path, headers=headers, timeout=30)
                assert response.status_code == 200, response.text
                return parse(response.text)

            node = call(first, "POST", "/hypervisors", json={"name": "LAB", "kind": "fake",
                                                               "endpoint": "fake://lab"}).json()
            (first.data_dir / "images" / "root.img").write_bytes(b"img")
            image = call(first, "POST", "/images", json={"name": "Linux", "osType": "linux",
                                                         "imagePath": "root.img"}).json()
            ready = follow(second, "/events")[0]
            task = call(first, "POST", "/tasks", json={
                "hostname": "two-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]}, "os": {"imageId": image["id"]}}).json()
            assert call(first, "DELETE", f"/tasks/{task['id']}").status_code == 200
            created_then_cancelled = follow(second, "/events", ready["id"])
            assert [(e["data"]["id"], e["data"]["status"]) for e in created_then_cancelled] == [
                (task["id"], states.CANCELLED)]

            snapshot = follow(second, f"/tasks/{task['id']}/events")
            assert snapshot[-1]["event"] == "task" and snapshot[-1]["data"]["status"] == states.CANCELLED
            worker = Database(url or f"sqlite:///{first.data_dir / 'octoprov.sqlite'}")
            try:
                with worker.session() as session:
                    pipeline.log(session, task["id"], "written by another process")
            finally:
                worker.dispose()
            after = follow(second, f"/tasks/{task['id']}/events", snapshot[-1]["id"])
            assert [(e["event"], e["data"]["message"]) for e in after] == [("log", "written by another process")]
            assert follow(first, f"/tasks/{task['id']}/events", after[-1]["id"]) == []  # the same ids everywhere
        finally:
            second.stop()
    finally:
        first.stop()


def test_an_open_stream_ends_when_the_api_stops_instead_of_holding_the_stop(tmp_path):
    """gunicorn waits up to its graceful timeout (30 s) for requests in progress on SIGTERM: a UI page's
    stream would hold every stop that long. The stream ends at once, the server exits by itself."""
    import signal
    import threading

    api = start_live_api(tmp_path / "var", extra_env={"OCTOPROV_DATABASE_URL": "", "OCTOPROV_BROKER_URL": "",
                                                      "OCTOPROV_EVENTS_MAX_STREAM_S": "600"})
    received: list[str] = []
    response = requests.get(api.url + API + "/events", headers=api.headers, stream=True, timeout=60)
    assert response.status_code == 200

    def read() -> None:
        for line in response.iter_lines(decode_unicode=True):
            received.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        os.killpg(api.process.pid, signal.SIGTERM)
        api.process.wait(timeout=20)  # far below the graceful timeout: without the fix the server waits 30 s
        reader.join(timeout=10)
        assert api.process.returncode == 0 and not reader.is_alive()
        assert any(line.startswith("retry:") for line in received)  # it was streaming until then
    finally:
        response.close()
        api.stop()
