"""A whole Octoprov stack for pipeline tests: the real API server, Celery workers and beat,
against the session's Redis and a fresh PostgreSQL database. Every process is stopped by PID."""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from octoprov.crypto import Vault
from octoprov.db import Database
from tests.support.live import LiveApi, start_live_api
from tests.support.processes import start_octoprov, stop_group, stop_groups

API = "/api/v1/provisioning"


@dataclass
class Stack:
    api: LiveApi
    env: dict
    data_dir: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def database(self) -> Database:
        return Database(self.env["OCTOPROV_DATABASE_URL"])

    @property
    def vault(self) -> Vault:
        return Vault([self.env["OCTOPROV_SECRET_KEY"]])

    def call(self, method: str, path: str, expect: int | None = None, **kwargs):
        response = requests.request(method, self.api.url + API + path, headers=self.api.headers, timeout=30,
                                    **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def start_worker(self, concurrency: int = 4, queues: str = "default,hyperv,kvm,baremetal",
                     log: Path | None = None) -> subprocess.Popen:
        """A Celery worker process on ``queues``; its output goes to ``log`` when given (else nowhere)."""
        with contextlib.ExitStack() as files:  # the child keeps its own descriptor of the log
            output = {}
            if log is not None:
                output = {"stdout": files.enter_context(open(log, "ab")), "stderr": subprocess.STDOUT}
            process = start_octoprov("worker", "--queues", queues, "--concurrency", str(concurrency),
                                     "--hostname", f"w{len(self.workers)}@%h", env=self.env, **output)
        self.workers.append(process)
        return process

    def start_beat(self) -> subprocess.Popen:
        process = start_octoprov("beat", env=self.env)
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        stop_group(process, sig)

    def stop(self) -> None:
        """The workers, beat and the API signalled together and awaited until one deadline: their shutdowns
        (a worker waits for its pool's children) overlap instead of adding up."""
        api = [self.api.process] if self.api.process is not None else []
        stop_groups([*self.workers, *api])

    # -- helpers for the tests -------------------------------------------------------------------

    def fake_node(self, name: str, **fake) -> int:
        options = {"delayS": 0.0, "callbackDelayS": 0.05, **fake}
        return self.call("POST", "/hypervisors", 201, json={
            "name": name, "kind": "fake", "endpoint": "fake://lab", "fake": options}).json()["id"]

    def image(self) -> int:
        path = self.data_dir / "images" / "install.wim"
        if not path.exists():
            path.write_bytes(b"wim")
        return self.call("POST", "/images", 201, json={
            "name": "WS2025", "osType": "windows", "imagePath": "install.wim"}).json()["id"]

    def task(self, node_id: int, image_id: int, hostname: str = "FAKE-01", **extra) -> dict:
        return self.call("POST", "/tasks", 201, json=self.task_body(node_id, image_id, hostname, **extra)).json()

    @staticmethod
    def task_body(node_id: int, image_id: int, hostname: str = "FAKE-01", **extra) -> dict:
        """The request of a fake task (``POST /tasks``)."""
        return {"hostname": hostname, "targetType": "fake", "hypervisorNodeId": node_id,
                "vm": {"cpu": 2, "memoryGb": 4, "disks": [{"sizeGb": 40, "purpose": "os"}]},
                "os": {"imageId": image_id, "adminPassword": "Pa55word!"}, **extra}

    def get(self, task_id: int) -> dict:
        return self.call("GET", f"/tasks/{task_id}", 200).json()

    def wait_for(self, task_id: int, statuses: set[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if task["status"] in statuses:
                return task
            assert time.monotonic() < deadline, f"task {task_id} still {task['status']}: {task['currentStep']}"
            time.sleep(0.2)

    def wait_step(self, task_id: int, step: str, status: str = "running", timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            found = next(s for s in task["steps"] if s["name"] == step)
            if found["status"] == status:
                return task
            assert time.monotonic() < deadline, f"step {step} of task {task_id} is {found['status']}"
            time.sleep(0.1)

    def callback_token(self, task_id: int) -> str:
        from octoprov.models import Task

        database = self.database
        try:
            with database.session() as session:
                return self.vault.decrypt(session.get(Task, task_id).callback_token_encrypted)
        finally:
            database.dispose()

    def report(self, task_id: int, event: str, status: str = "ok", token: str | None = None) -> requests.Response:
        return requests.post(self.api.url + API + "/pxe/status", timeout=30, json={
            "taskId": task_id, "token": token or self.callback_token(task_id), "event": event, "status": status})


_REDIS_DATABASES = itertools.cycle(range(1, 9))  # 0 serves the other tests, 9 the webhook tests


def start_stack(tmp_path: Path, postgres_server, redis_url: str, **settings: str) -> Stack:
    """A stack on its own PostgreSQL database and its own Redis database number, so that the
    workers of two stacks alive at once never take each other's messages."""
    data_dir = tmp_path / "var"
    database_url = postgres_server.create_database()
    redis_url = f"{redis_url.rsplit('/', 1)[0]}/{next(_REDIS_DATABASES)}"
    flush_redis(redis_url)
    key = Fernet.generate_key().decode()
    extra = {"OCTOPROV_BROKER_URL": redis_url, "OCTOPROV_SECRET_KEY": key, "OCTOPROV_STEP_RETRY_BASE_S": "1",
             **{f"OCTOPROV_{k.upper()}": str(v) for k, v in settings.items()}}
    api = start_live_api(data_dir, database_url, extra_env=extra)
    env = {**api.env, "OCTOPROV_PUBLIC_URL": api.url}
    return Stack(api, env, data_dir)


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
