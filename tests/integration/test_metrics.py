"""GET /metrics after a fake task ran to completion, read with prometheus_client's own parser: tasks
by state and target, step durations from the database, callbacks and boot answers and request
latency by URL rule; token protection by setting; no secret, MAC or raw path in the output.

Through the real Flask app on both database backends; the steps are claimed and completed by the
pipeline's own functions and the machine's callbacks posted to the API, as a worker and a machine would.
Several API processes: the real `octoprov api` (gunicorn) with two workers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api import create_app
from api.runtime import DISPATCH
from octoprov import metrics, pipeline
from octoprov.models import MAX_ID, Task, TaskStep
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from tests.support.library import API, created
from tests.support.live import start_live_api
from tests.support.prom import sample, samples

STATUS = f"{API}/pxe/status"
PASSWORD = "Hunter2-metrics-secret"  # must never show up in /metrics
NODE_PASSWORD = "node-secret-in-the-vault"
MAC = "52:54:00:aa:bb:cc"


def fake_task(client, settings) -> int:
    (settings.effective_images_dir / "root.img").write_bytes(b"img")
    image = created(client, "images", {"name": "Linux", "osType": "linux", "imagePath": "root.img"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab",
                                           "username": "operator", "password": NODE_PASSWORD})
    task = created(client, "tasks", {"hostname": "metrics-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                     "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                     "os": {"imageId": image["id"], "adminPassword": PASSWORD}})
    return task["id"]


def run_to_completion(client, runtime: Runtime, task_id: int) -> tuple[list[str], str]:
    """Work steps done by the pipeline's functions, wait steps by the machine's callbacks; the events
    posted and the task's callback token."""
    with runtime.database.session() as session:
        token = runtime.vault.decrypt(session.get(Task, task_id).callback_token_encrypted)
    posted = []
    for _ in range(100):
        with runtime.database.session() as session:
            current = next((row for row in pipeline.step_rows(session, task_id) if row.status != "done"), None)
            if current is None:
                return posted, token
            if current.kind == "work":
                assert pipeline.claim(session, task_id, current.name, 60).step == current.name
                assert pipeline.complete(session, runtime.settings, task_id, current.name, "done in the test")
                continue
        answer = client.post(STATUS, json={"taskId": task_id, "token": token, "event": current.event})
        assert answer.status_code == 200 and answer.json["accepted"], answer.json
        posted.append(current.event)
    raise AssertionError("the task did not complete")


@pytest.fixture
def inline(app):
    """No broker: what the API would queue is dropped (the test completes the steps itself)."""

    class Nowhere:
        def run_steps(self, *args) -> bool:
            return True

        def after_failure(self, *args) -> None:
            pass

    app.extensions[DISPATCH] = Nowhere()


def scrape(client) -> tuple[str, dict]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_after_a_fake_task(app, client, anonymous, settings, runtime, inline):
    task_id = fake_task(client, settings)
    events, token = run_to_completion(client, runtime, task_id)
    assert client.get(f"{API}/tasks/{task_id}").json["status"] == "completed"
    # one step took 100 s: its duration is a fact of the database, bucketed at scrape time
    with runtime.database.session() as session:
        step = session.query(TaskStep).filter_by(task_id=task_id, name="create_vm").one()
        session.execute(update(TaskStep).where(TaskStep.id == step.id)
                        .values(started_at=step.finished_at - timedelta(seconds=100)))
        work_steps = [row.name for row in pipeline.step_rows(session, task_id) if row.kind == "work"]
    duplicate = client.post(STATUS, json={"taskId": task_id, "token": token, "event": events[0]})
    assert duplicate.json["accepted"] is False
    assert client.post(STATUS, json={"taskId": task_id, "token": "wrong", "event": events[0]}).status_code == 403
    assert client.post(STATUS, json={"taskId": task_id, "token": token, "event": "rebooted"}).status_code == 400
    assert client.post(STATUS, json={"taskId": 999999, "token": token, "event": events[0]}).status_code == 404
    assert client.get(f"{API}/pxe/boot", query_string={"mac": MAC}).status_code == 200
    assert client.get(f"{API}/pxe/boot.grub", query_string={"mac": MAC}).status_code == 200
    for _ in range(3):
        assert client.get(f"{API}/tasks/{task_id}").status_code == 200
    assert client.get("/no/such/page").status_code == 404

    text, families = scrape(anonymous)

    assert sample(families, "octoprov_database_up") == 1
    assert sample(families, "octoprov_tasks", state="completed", target="fake") == 1
    assert sample(families, "octoprov_tasks", state="pending", target="fake") == 0
    steps = families["octoprov_step_duration_seconds"]
    assert families["octoprov_step_duration_seconds"].type == "histogram"
    counted = {s.labels["step"] for s in steps.samples if s.name.endswith("_count")}
    assert set(work_steps) <= counted and "installer_started" in counted
    create = {"target": "fake", "step": "create_vm"}
    assert sample(families, "octoprov_step_duration_seconds", "_count", **create) == 1
    assert sample(families, "octoprov_step_duration_seconds", "_bucket", le="60.0", **create) == 0
    assert sample(families, "octoprov_step_duration_seconds", "_bucket", le="120.0", **create) == 1
    assert 99 <= sample(families, "octoprov_step_duration_seconds", "_sum", **create) <= 101

    for event in events:
        assert sample(families, "octoprov_callbacks", "_total", event=event, outcome="accepted") == 1
    assert sample(families, "octoprov_callbacks", "_total", event=events[0], outcome="ignored") == 1
    assert sample(families, "octoprov_callbacks", "_total", event=events[0], outcome="refused") == 1
    assert sample(families, "octoprov_callbacks", "_total", event="invalid", outcome="invalid") == 1
    assert sample(families, "octoprov_callbacks", "_total", event=events[0], outcome="unknown_task") == 1
    assert sum(s.value for s in samples(families, "octoprov_boot_answers", "_total", kind="ipxe")) == 1
    assert sum(s.value for s in samples(families, "octoprov_boot_answers", "_total", kind="grub")) == 1

    latency = "octoprov_api_request_duration_seconds"
    assert families[latency].type == "histogram"
    task_route = {"route": f"{API}/tasks/<int(max={MAX_ID}):task_id>", "method": "GET", "status": "200"}
    assert sample(families, latency, "_count", **task_route) == 4
    assert sample(families, latency, "_count", route=f"{API}/tasks", method="POST", status="201") == 1
    assert sample(families, latency, "_count", route=STATUS, method="POST", status="403") == 1
    assert sample(families, latency, "_count", route="(unmatched)", method="GET", status="404") == 1
    routes = {s.labels["route"] for s in families[latency].samples}
    assert routes <= {rule.rule for rule in app.url_map.iter_rules()} | {"(unmatched)"}, routes

    for secret in (PASSWORD, NODE_PASSWORD, token, MAC, MAC.replace(":", "-"), "metrics-01"):
        assert secret not in text


def test_the_webhook_counters_come_from_the_database(anonymous, database):
    with database.session() as session:
        for _ in range(3):
            metrics.increment(session, metrics.WEBHOOK_DELIVERIES, {"event": "task.completed", "outcome": "delivered"})
        metrics.increment(session, metrics.WEBHOOK_DELIVERIES, {"event": "task.failed", "outcome": "failed"})
        metrics.increment(session, metrics.WEBHOOK_RETRIES, {"event": "task.failed"}, amount=5)
    _, families = scrape(anonymous)
    assert sample(families, "octoprov_webhook_deliveries", "_total", event="task.completed", outcome="delivered") == 3
    assert sample(families, "octoprov_webhook_deliveries", "_total", event="task.failed", outcome="failed") == 1
    assert sample(families, "octoprov_webhook_retries", "_total", event="task.failed") == 5


def test_a_counter_refuses_labels_it_does_not_have(database):
    with database.session() as session, pytest.raises(ValueError, match="event, outcome"):
        metrics.increment(session, metrics.WEBHOOK_DELIVERIES, {"event": "task.completed", "url": "https://x"})


def test_metrics_ask_for_a_token_when_the_setting_says_so(tmp_path, database, token):
    settings = Settings(data_dir=tmp_path / "var", metrics_token_required=True)
    runtime = Runtime(settings, database, Runtime.from_settings(settings).vault)
    app = create_app(runtime=runtime)
    anonymous = app.test_client()
    refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and "token" in refused.json["message"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer opv_not-a-token"}).status_code == 401
    answered = anonymous.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answered.status_code == 200
    names = {family.name for family in text_string_to_metric_families(answered.get_data(as_text=True))}
    assert {"octoprov_tasks", "octoprov_api_request_duration_seconds"} <= names


def test_an_unreadable_database_is_reported_not_raised(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'missing' / 'no.sqlite'}")
    app = create_app(runtime=Runtime.from_settings(settings))
    _, families = scrape(app.test_client())
    assert sample(families, "octoprov_database_up") == 0
    assert "octoprov_tasks" not in families


def test_several_api_processes_count_together(tmp_path):
    """The real `octoprov api` with two gunicorn workers: whichever worker takes a scrape, it shows the
    requests and callbacks both of them served (prometheus_client's multiprocess files)."""
    stale = tmp_path / "var" / "metrics"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"left by an API that stopped")
    live = start_live_api(tmp_path / "var", extra_env={"OCTOPROV_API_WORKERS": "2"})
    try:
        assert not (stale / "counter_1.db").exists()
        for _ in range(20):  # a new connection each: the workers share them
            assert requests.get(f"{live.url}{API}/templates", headers=live.headers, timeout=10).status_code == 200
            refused = requests.post(f"{live.url}{STATUS}", json={"taskId": 4242, "token": "t", "event": "first_boot"},
                                    timeout=10)
            assert refused.status_code == 404
        seen = set()
        for _ in range(10):
            text = requests.get(f"{live.url}/metrics", timeout=10).text
            families = {family.name: family for family in text_string_to_metric_families(text)}
            seen.add((sample(families, "octoprov_api_request_duration_seconds", "_count",
                             route=f"{API}/templates", method="GET", status="200"),
                      sample(families, "octoprov_callbacks", "_total", event="first_boot", outcome="unknown_task")))
            assert sample(families, "octoprov_database_up") == 1
            assert live.token not in text
        assert seen == {(20, 20)}
        assert {path.name.split("_")[0] for path in stale.glob("*.db")} >= {"counter", "histogram"}
    finally:
        live.stop()
