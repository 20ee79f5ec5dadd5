"""The real API server while its database or its broker cannot be reached: 503 with Retry-After and a
message naming what is down (never a 500 with a traceback), and the usual answers again once it is back,
without restarting the API. Each test has a server of its own to stop (tests/support/servers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from api.outage import RETRY_AFTER_S, reason, unreachable
from octoprov.models import Task
from tests.support.servers import RunningServer, ServerUnavailable, start_postgres, start_redis, unavailable
from tests.support.stack import Stack, start_stack

DATABASE_DOWN = "the database is unreachable; try again shortly"
BROKER_DOWN = "the broker is unreachable; try again shortly"
MAC = "52:54:00:0a:0b:0c"
BACK_WITHIN_S = 10
ANSWERED_WITHIN_S = 5  # a request never waits long for a part that is down


def _own(start: Callable[[Path], RunningServer], base_dir: Path) -> Iterator[RunningServer]:
    try:
        server = start(base_dir)
    except ServerUnavailable as exc:
        missing = str(exc)
    else:
        try:
            yield server
        finally:
            server.stop()
        return
    unavailable(missing)  # outside the except block: no chained traceback in the report


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[RunningServer]:
    yield from _own(start_postgres, tmp_path / "postgres")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RunningServer]:
    yield from _own(start_redis, tmp_path / "redis")


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    """The stacks a test starts, stopped (by PID) when it ends."""
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.stop()


def _task_body(node_id: int, image_id: int, hostname: str) -> dict:
    return {"hostname": hostname, "targetType": "fake", "hypervisorNodeId": node_id,
            "vm": {"cpu": 2, "memoryGb": 4, "disks": [{"sizeGb": 40, "purpose": "os"}]},
            "os": {"imageId": image_id, "adminPassword": "Pa55word!"}}


def _requests(stack: Stack, task_id: int, body: dict) -> dict[str, tuple[str, str, dict]]:
    """What a client, a browser and a booting machine ask for, each reading or writing the database:
    name -> (method, URL, requests' keyword arguments)."""
    api, token = stack.api.url + "/api/v1/provisioning", stack.api.headers
    ipxe = {"User-Agent": "iPXE/1.21.1"}
    return {
        "list tasks": ("GET", f"{api}/tasks", {"headers": token}),
        "get a task": ("GET", f"{api}/tasks/{task_id}", {"headers": token}),
        "create a task": ("POST", f"{api}/tasks", {"headers": token, "json": body}),
        "follow the tasks": ("GET", f"{api}/events", {"headers": token}),
        "boot script": ("GET", f"{api}/pxe/boot", {"headers": ipxe, "params": {"mac": MAC}}),
        "sign in": ("POST", stack.api.url + "/api/v1/session",
                    {"json": {"username": "nobody", "password": "not-this-one"}}),
        # plain Flask routes, outside the restx Api
        "metrics": ("GET", stack.api.url + "/metrics", {"headers": token}),
        "virtual media": ("GET", stack.api.url + "/boot/media/no-such-token/boot.iso", {}),
    }


def _call(method: str, url: str, kwargs: dict) -> requests.Response:
    return requests.request(method, url, timeout=30, **kwargs)


def _assert_unavailable(response: requests.Response, message: str, name: str) -> None:
    assert response.status_code == 503, f"{name}: {response.status_code} {response.text}"
    assert response.headers.get("Retry-After") == str(RETRY_AFTER_S), name
    assert response.json() == {"message": message}, name
    assert "Traceback" not in response.text


def _log(stack: Stack, name: str) -> str:
    path = stack.data_dir / "log" / name
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.postgres
@pytest.mark.redis
def test_database_outage_answers_503_until_it_is_back(tmp_path: Path, own_postgres: RunningServer,
                                                       own_redis: RunningServer, stacks: list[Stack]) -> None:
    stack = start_stack(tmp_path, own_postgres, own_redis.url, metrics_token_required="true")
    stacks.append(stack)
    node, image = stack.fake_node("HV-OUTAGE"), stack.image()
    task = stack.task(node, image, "OUTAGE-01")
    calls = _requests(stack, task["id"], _task_body(node, image, "OUTAGE-02"))
    stream = requests.get(stack.api.url + f"/api/v1/provisioning/tasks/{task['id']}/events",
                          headers=stack.api.headers, stream=True, timeout=(5, 30))
    assert stream.status_code == 200

    with own_postgres.outage():
        # a stream that was open when the database went ends cleanly (its client reconnects, and is told to wait)
        received = b"".join(stream.iter_content(chunk_size=None))
        assert b"Traceback" not in received
        for name, (method, url, kwargs) in calls.items():
            started = time.monotonic()
            _assert_unavailable(_call(method, url, kwargs), DATABASE_DOWN, name)
            assert time.monotonic() - started < ANSWERED_WITHIN_S, name
        # the pages themselves read nothing from the database: their scripts get the 503s above
        page = requests.get(stack.api.url + f"/ui/tasks/{task['id']}", timeout=30)
        assert page.status_code == 200, page.text

    deadline = time.monotonic() + BACK_WITHIN_S
    while _call(*calls["list tasks"]).status_code != 200:
        assert time.monotonic() < deadline, f"the API did not serve again within {BACK_WITHIN_S} s"
        time.sleep(0.2)
    expected = {"list tasks": 200, "get a task": 200, "create a task": 201, "boot script": 200, "sign in": 401,
                "metrics": 200, "virtual media": 404}
    for name, status in expected.items():
        response = _call(*calls[name])
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
    method, url, kwargs = calls["follow the tasks"]
    with _call(method, url, {**kwargs, "stream": True}) as follow:
        assert follow.status_code == 200
    assert requests.get(stack.api.url + "/ui/", timeout=30).status_code == 200

    api_log = _log(stack, "api.log")
    assert "GET /api/v1/provisioning/tasks answered 503: the database is unreachable" in api_log
    assert "an event stream ended: the database is unreachable" in api_log
    assert "the audit entry for POST /provisioning/tasks (503) is not written" in api_log
    assert "Traceback" not in api_log + _log(stack, "api-server.log")
    assert "no-such-token" not in api_log  # the route's pattern is logged, never the path's token


@pytest.mark.postgres
@pytest.mark.redis
def test_broker_outage_keeps_new_tasks_and_answers_503_to_what_must_publish(
        tmp_path: Path, postgres_server: RunningServer, own_redis: RunningServer, stacks: list[Stack]) -> None:
    stack = start_stack(tmp_path, postgres_server, own_redis.url)
    stacks.append(stack)
    node, image = stack.fake_node("HV-BROKER"), stack.image()
    first = stack.task(node, image, "BROKER-01")

    with own_redis.outage():
        started = time.monotonic()
        created = stack.call("POST", "/tasks", 201, json=_task_body(node, image, "BROKER-02")).json()
        assert time.monotonic() - started < ANSWERED_WITHIN_S
        assert created["status"] == "pending"
        assert stack.get(created["id"])["status"] == "pending"  # stored: the periodic job queues it later
        logs = stack.call("GET", f"/tasks/{created['id']}/logs", 200).json()
        assert any("broker could not be reached" in entry["message"] for entry in logs)
        # a cancel is recorded with its rollback due; the rollback is sent by the periodic job once it can be
        started = time.monotonic()
        cancelled = stack.call("DELETE", f"/tasks/{first['id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert time.monotonic() - started < ANSWERED_WITHIN_S
    database = stack.database
    try:
        with database.session() as session:
            assert session.get_one(Task, first["id"]).rollback_due_at is not None
    finally:
        database.dispose()

    cancelled = stack.call("DELETE", f"/tasks/{created['id']}")
    assert cancelled.status_code == 200, cancelled.text
    api_log = _log(stack, "api.log")
    assert f"task {first['id']}: could not send the rollback now" in api_log
    assert "Traceback" not in api_log + _log(stack, "api-server.log")


def test_the_logged_reason_holds_neither_the_statement_nor_its_parameters(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        with pytest.raises(OperationalError) as caught, engine.connect() as connection:
            connection.execute(text("SELECT secret FROM vault WHERE token = :token"), {"token": "s3cr3t-t0ken"})
    finally:
        engine.dispose()
    assert "s3cr3t-t0ken" in str(caught.value)  # SQLAlchemy's own message has them
    assert unreachable(caught.value) == "database"
    assert reason(caught.value) == "OperationalError: no such table: vault"
    broker = OSError("Error 111 connecting to redis://octoprov:hunter2@127.0.0.1:6379/0")
    assert reason(broker) == "OSError: Error 111 connecting to redis://***@127.0.0.1:6379/0"
