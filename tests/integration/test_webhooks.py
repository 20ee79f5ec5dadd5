"""Completion webhooks: the signature, the payload, delivery to a real HTTP receiver, the request
field, and a real Celery worker retrying a delivery through Redis."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from octoprov import migrate
from octoprov.db import Database
from octoprov.errors import InvalidRequest
from octoprov.metrics import DatabaseCollector
from octoprov.models import Task, TaskLog
from octoprov.settings import Settings
from octoprov.taskspec import parse_task_request
from octoprov.webhooks import (
    DeliveryFailed,
    deliver,
    encode_body,
    event_for,
    signature,
    task_payload,
    webhook_urls,
)
from tests.support.examples import spec_example
from tests.support.processes import stop_group
from workers.app import make_celery
from workers.notify import NOTIFY_TASK, enqueue_notifications

SECRET = "whsec-unique-4e1d9a"
NO_PROXY = "127.0.0.1,localhost"
LOG_DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    """A proxy configured on the machine must not stand between the tests and their receiver."""
    monkeypatch.setenv("no_proxy", NO_PROXY)
    monkeypatch.setenv("NO_PROXY", NO_PROXY)


# -- a real receiver ------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with ``statuses`` in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay_s: float = 0.0
    location: str | None = None
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    index = len(receiver.requests) - 1
                    status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                if receiver.delay_s:
                    receiver._stop.wait(receiver.delay_s)
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # the client gave up (timeout test): nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/T0KEN-in-path"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def signed_by(request: Received, secret: str) -> bool:
    """What a receiver does: recompute the HMAC over the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers.get("X-Octoprov-Signature", ""))


@pytest.fixture
def closed_url():
    """A port bound but not listening: connections are refused, and nobody else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/T0KEN-in-path"


# -- signature, events, payload, URLs -------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_body():
    key, body = "It is a secret to everybody", b'{"event":"task.completed","taskId":7}'
    expected = "24dc07290351140a97be9c354c0f9fc2815c4c0189e6ead91c29a8948b02ef06"  # openssl dgst -sha256 -hmac
    assert hmac.new(key.encode(), body, hashlib.sha256).hexdigest() == expected
    assert signature(key, body) == "sha256=" + expected
    assert signature(key, body + b" ") != signature(key, body)


def test_events_only_for_final_states():
    assert event_for("completed") == "task.completed"
    assert event_for("failed") == "task.failed"
    assert event_for("cancelled") == "task.cancelled"
    for running in ("pending", "creating_vm", "booting", "installing", "configuring"):
        assert event_for(running) is None


def _task(**values) -> Task:
    defaults = dict(
        id=42, hostname="SQL-SERVER-01", target_type="hyperv", status="failed", current_step="install_os",
        progress_percent=40, error_message="installer did not report in",
        created_at=datetime(2024, 5, 1, 8, 0, 0),  # naive, as SQLite returns it
        completed_at=datetime(2024, 5, 1, 9, 30, 0, tzinfo=UTC),
        config={"vm": {"network": {"vswitch": "vSwitch-Prod"}}, "options": {"webhooks": []}},
        secrets_encrypted="gAAAA-encrypted-blob",
    )
    return Task(**{**defaults, **values})


def test_payload_has_the_outcome_and_nothing_of_the_configuration():
    payload = task_payload(_task())
    assert payload == {
        "event": "task.failed", "taskId": 42, "hostname": "SQL-SERVER-01", "targetType": "hyperv",
        "status": "failed", "currentStep": "install_os", "progressPercent": 40,
        "errorMessage": "installer did not report in",
        "createdAt": "2024-05-01T08:00:00+00:00", "completedAt": "2024-05-01T09:30:00+00:00",
    }
    text = json.dumps(payload)
    assert "vSwitch-Prod" not in text and "gAAAA" not in text
    assert task_payload(_task(completed_at=None), "task.failed")["completedAt"] is None


def test_payload_masks_a_password_in_the_error_message():
    payload = task_payload(_task(error_message="join failed: password=Hunter2-unique"))
    assert "Hunter2-unique" not in payload["errorMessage"]


def test_urls_from_settings_then_task_without_duplicates(settings):
    configured = Settings(data_dir=settings.data_dir, webhook_urls=" https://a.example/x , https://b.example/y,,")
    task = _task(config={"options": {"webhooks": ["https://b.example/y", "https://c.example/z"]}})
    assert webhook_urls(configured, task) == ["https://a.example/x", "https://b.example/y", "https://c.example/z"]
    assert webhook_urls(configured, _task(config=None)) == ["https://a.example/x", "https://b.example/y"]
    assert webhook_urls(settings, _task()) == []


def test_enqueue_sends_one_message_per_url_only_for_ended_tasks(settings):
    sent = []
    fake_app = SimpleNamespace(send_task=lambda name, args, queue: sent.append((name, args, queue)))
    task = _task(status="completed", config={"options": {"webhooks": ["https://a.example/x", "https://b.example/y"]}})
    assert enqueue_notifications(fake_app, settings, task) == ["https://a.example/x", "https://b.example/y"]
    assert [(name, args[:3], queue) for name, args, queue in sent] == [
        (NOTIFY_TASK, [42, "https://a.example/x", "task.completed"], "default"),
        (NOTIFY_TASK, [42, "https://b.example/y", "task.completed"], "default"),
    ]
    delivery_ids = [args[3] for _, args, _ in sent]
    assert len(set(delivery_ids)) == 2 and all(uuid.UUID(d).version == 4 for d in delivery_ids)
    sent.clear()
    assert enqueue_notifications(fake_app, settings, _task(status="installing")) == []
    assert sent == []


# -- delivery to a real HTTP server ---------------------------------------------------------------


BODY = {"event": "task.completed", "taskId": 7, "hostname": "WEB-01", "status": "completed"}


def test_deliver_posts_signed_json():
    delivery_id = str(uuid.uuid4())
    with Receiver() as receiver:
        status = deliver(receiver.url, "task.completed", delivery_id, BODY, SECRET, timeout=5)
    assert status == 200
    [request] = receiver.requests
    assert request.path == "/hooks/T0KEN-in-path"
    assert request.body == b'{"event":"task.completed","hostname":"WEB-01","status":"completed","taskId":7}'
    assert json.loads(request.body) == BODY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "octoprov-webhook/1"
    assert request.headers["X-Octoprov-Event"] == "task.completed"
    assert request.headers["X-Octoprov-Delivery"] == delivery_id
    assert signed_by(request, SECRET)
    assert not signed_by(request, SECRET + "x")


def test_deliver_without_secret_sends_no_signature():
    with Receiver(statuses=[204]) as receiver:
        assert deliver(receiver.url, "task.failed", "d-1", BODY, "", timeout=5) == 204
    assert "X-Octoprov-Signature" not in receiver.requests[0].headers


def test_deliver_sends_credentials_of_the_url_as_basic_auth():
    with Receiver() as receiver:
        parts = urlsplit(receiver.url)
        url = urlunsplit(parts._replace(netloc=f"hook%40user:p%3Ass@{parts.netloc}"))
        deliver(url, "task.completed", "d-1", BODY, SECRET, timeout=5)
    assert receiver.requests[0].headers["Authorization"] == "Basic aG9va0B1c2VyOnA6c3M="  # hook@user:p:ss


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_deliver_fails_on_an_error_status(status):
    with Receiver(statuses=[status]) as receiver, pytest.raises(DeliveryFailed) as failed:
        deliver(receiver.url, "task.completed", "d-1", BODY, SECRET, timeout=5)
    assert str(status) in str(failed.value)
    assert SECRET not in str(failed.value) and "T0KEN" not in str(failed.value)


def test_deliver_fails_when_the_connection_is_refused(closed_url):
    with pytest.raises(DeliveryFailed, match="connection") as failed:
        deliver(closed_url, "task.completed", "d-1", BODY, SECRET, timeout=5)
    assert SECRET not in str(failed.value) and "T0KEN" not in str(failed.value)


def test_deliver_does_not_follow_redirects():
    with Receiver() as elsewhere, Receiver(statuses=[302], location=elsewhere.url) as receiver:
        with pytest.raises(DeliveryFailed, match="302"):
            deliver(receiver.url, "task.completed", "d-1", BODY, SECRET, timeout=5)
        assert len(receiver.requests) == 1
        assert elsewhere.requests == [], "the signed body went nowhere else"


def test_deliver_gives_up_after_the_timeout():
    with Receiver(delay_s=5) as receiver:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"0\.5 s") as failed:
            deliver(receiver.url, "task.completed", "d-1", BODY, SECRET, timeout=0.5)
        assert time.monotonic() - started < 4
    assert SECRET not in str(failed.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://files.example/x", "/relative", "http://host:port/"])
def test_deliver_refuses_other_urls(url):
    with pytest.raises(DeliveryFailed):
        deliver(url, "task.completed", "d-1", BODY, SECRET, timeout=1)


# -- the request field --------------------------------------------------------------------------


class FakeRefs:
    """Image 1 (windows, not scanned), hypervisor 5 (hyperv), package 8 and groups 5 and 12: what the
    spec's example refers to."""

    def image_os_type(self, image_id):
        return "windows" if image_id == 1 else None

    def image_indexes(self, image_id):
        return None

    def template_exists(self, template_id):
        return False

    def hypervisor_kind(self, node_id):
        return "hyperv" if node_id == 5 else None

    def package(self, package_id):
        if package_id != 8:
            return None
        schema = {"type": "object", "properties": {"instanceName": {"type": "string"}}, "required": []}
        return SimpleNamespace(name="SQL Server", os_type="windows", parameters_schema=schema)

    def group_exists(self, group_id):
        return group_id in (5, 12)

    def script_os_type(self, name):
        return "windows" if name == "Configure-Firewall.ps1" else None


def _request(webhooks: object) -> dict:
    return {**spec_example(), "options": {"webhooks": webhooks}}


def _errors(webhooks: object) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as invalid:
        parse_task_request(_request(webhooks), {}, FakeRefs())
    return invalid.value.errors


def test_task_webhooks_are_kept_in_the_config():
    urls = ["https://chat.example/hooks/1", "http://itsm.example:8080/api/notify?team=ops"]
    spec = parse_task_request(_request(urls), {}, FakeRefs())
    assert spec.options.webhooks == urls
    assert spec.to_config()["options"]["webhooks"] == urls
    default = parse_task_request(spec_example(), {}, FakeRefs())
    assert default.options.webhooks == [] and default.options.keep_vm_on_failure is False


@pytest.mark.parametrize(("webhooks", "path", "words"), [
    (["ftp://files.example/hook"], "options.webhooks[0]", "http"),
    (["https://ok.example/", "/hooks/relative"], "options.webhooks[1]", "absolute"),
    (["chat.example/hook"], "options.webhooks[0]", "absolute"),
    (["https:///no-host"], "options.webhooks[0]", "host"),
    (["https://ok.example/" + "a" * 2000], "options.webhooks[0]", "2000"),
    (["https://ok.example:99999/"], "options.webhooks[0]", "port"),
    (["https://ok.example/a b"], "options.webhooks[0]", "spaces"),
    ([f"https://h{i}.example/" for i in range(6)], "options.webhooks", "5"),
])
def test_invalid_task_webhooks_are_reported_at_their_place(webhooks, path, words):
    errors = _errors(webhooks)
    assert list(errors) == [path]
    assert words in errors[path]


# -- a real worker, through Redis -----------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen
    database: Database
    celery: object
    settings: Settings
    log_path: Path

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
        return ""


def _own_redis_database(url: str, number: int = 9) -> str:
    """The session Redis, another database number: messages a failed run leaves behind cannot
    reach the workers of other tests, which consume the same queue names."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


@pytest.fixture(scope="module")
def worker(redis_url, tmp_path_factory):
    base = tmp_path_factory.mktemp("webhooks")
    env = {
        **os.environ,
        "OCTOPROV_DATA_DIR": str(base / "var"),
        "OCTOPROV_BROKER_URL": _own_redis_database(redis_url),
        "OCTOPROV_DATABASE_URL": f"sqlite:///{base / 'octoprov.sqlite'}",
        "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode(),
        "OCTOPROV_WEBHOOK_SECRET": SECRET,
        "OCTOPROV_WEBHOOK_RETRY_BASE_S": "1",
        "OCTOPROV_WEBHOOK_RETRIES": "3",
        "OCTOPROV_WEBHOOK_TIMEOUT_S": "5",
        "OCTOPROV_WEBHOOK_URLS": "",
        "no_proxy": NO_PROXY,
        "NO_PROXY": NO_PROXY,
    }
    settings = Settings.from_env(env)
    database = Database.from_settings(settings)
    migrate.upgrade(database.engine)
    log_path = base / "worker-output.log"
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queues", "default", "--concurrency", "2"],
            env=env, start_new_session=True, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )
    celery = make_celery(settings)
    try:
        yield Worker(process, database, celery, settings, log_path)
    finally:
        stop_group(process)
        celery.close()
        database.dispose()


def _ended_task(worker: Worker, url: str) -> int:
    with worker.database.session() as session:
        task = Task(hostname="WEB-01", target_type="kvm", status="completed", progress_percent=100,
                    completed_at=datetime.now(UTC), config={"options": {"webhooks": [url]}})
        session.add(task)
    # after the commit, as the pipeline does: the worker reads the task row
    assert enqueue_notifications(worker.celery, worker.settings, task) == [url]
    return task.id


def _wait_for_log(worker: Worker, task_id: int, text: str) -> TaskLog:
    deadline = time.monotonic() + LOG_DEADLINE_S
    while True:
        with worker.database.session() as session:
            rows = session.scalars(select(TaskLog).where(TaskLog.task_id == task_id, TaskLog.step == "notify"))
            found = [row for row in rows if text in (row.message or "")]
        if found:
            return found[0]
        assert worker.process.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"no log {text!r} within {LOG_DEADLINE_S:.0f} s:\n{worker.log_tail()}"
        time.sleep(0.2)


def _notify_logs(worker: Worker, task_id: int) -> list[TaskLog]:
    with worker.database.session() as session:
        return list(session.scalars(select(TaskLog).where(TaskLog.task_id == task_id, TaskLog.step == "notify")))


def _counted(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The webhook counters as /metrics shows them (read from the database the worker counts in)."""
    families = DatabaseCollector(worker.database).collect()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples
            if s.name.startswith("octoprov_webhook_") and s.name.endswith("_total")}


def _wait_for_counts(worker: Worker, before: dict, expected: dict) -> None:
    """The counters went up by ``expected`` (name, labels as a dict) -> increase since ``before``."""
    deadline = time.monotonic() + LOG_DEADLINE_S
    while True:
        now = _counted(worker)
        grown = {key: now.get(key, 0) - before.get(key, 0) for key in now}
        wanted = {(name, tuple(sorted(labels.items()))): value for (name, labels), value in expected}
        if {key: value for key, value in grown.items() if value} == wanted:
            return
        assert time.monotonic() < deadline, f"webhook counters grew by {grown}, not {wanted}"
        time.sleep(0.2)


@pytest.mark.redis
def test_worker_retries_until_the_receiver_takes_it(worker):
    counted = _counted(worker)
    with Receiver(statuses=[500, 500, 200]) as receiver:
        task_id = _ended_task(worker, receiver.url)
        row = _wait_for_log(worker, task_id, "webhook delivered")
        time.sleep(1.5)  # the first retry came after 1 s: a fourth attempt would have come by now
    assert row.level == "info" and row.message == "webhook delivered to 127.0.0.1 (HTTP 200)"
    assert len(receiver.requests) == 3
    assert len({r.headers["X-Octoprov-Delivery"] for r in receiver.requests}) == 1
    uuid.UUID(receiver.requests[0].headers["X-Octoprov-Delivery"])
    assert len({r.body for r in receiver.requests}) == 1, "every attempt sends the same bytes"
    assert all(signed_by(r, SECRET) for r in receiver.requests)
    body = json.loads(receiver.requests[0].body)
    assert body["event"] == "task.completed" and body["taskId"] == task_id and body["status"] == "completed"
    assert receiver.requests[0].body == encode_body(body)
    assert [r.level for r in _notify_logs(worker, task_id)] == ["info"]
    _wait_for_counts(worker, counted, [
        (("octoprov_webhook_deliveries_total", {"event": "task.completed", "outcome": "delivered"}), 1),
        (("octoprov_webhook_retries_total", {"event": "task.completed"}), 2)])


@pytest.mark.redis
def test_worker_gives_up_on_a_dead_receiver_without_touching_the_task(worker, closed_url):
    counted = _counted(worker)
    task_id = _ended_task(worker, closed_url)
    row = _wait_for_log(worker, task_id, "failed after")
    assert row.level == "warn"
    assert "127.0.0.1" in row.message and "4 attempt(s)" in row.message and "connection failed" in row.message
    assert "T0KEN" not in row.message and SECRET not in row.message
    with worker.database.session() as session:
        task = session.get(Task, task_id)
        assert (task.status, task.error_message) == ("completed", None)
    assert [r.level for r in _notify_logs(worker, task_id)] == ["warn"]
    _wait_for_counts(worker, counted, [
        (("octoprov_webhook_deliveries_total", {"event": "task.completed", "outcome": "failed"}), 1),
        (("octoprov_webhook_retries_total", {"event": "task.completed"}), 3)])
