"""A real Celery worker process answers through each broker: Redis, and the embedded SQLAlchemy one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from octoprov.settings import Settings
from tests.support.processes import start_octoprov, stop_group
from workers.app import make_celery


@pytest.fixture(params=["redis", "embedded"])
def broker_env(request, tmp_path):
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(tmp_path / "var"),
           "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode()}
    if request.param == "redis":
        env["OCTOPROV_BROKER_URL"] = request.getfixturevalue("redis_url")
    else:
        env.pop("OCTOPROV_BROKER_URL", None)
    return env


def test_worker_process_runs_a_task(broker_env):
    worker = start_octoprov("worker", "--queues", "default,kvm", "--concurrency", "1", env=broker_env)
    try:
        settings = Settings.from_env(broker_env)
        app = make_celery(settings)
        answer = app.send_task("octoprov.ping", queue="kvm").get(timeout=90)
        child = answer["pid"]
        parent = int(Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[1])
        assert worker.pid in (child, parent), "the answer came from the worker started here"
    finally:
        stop_group(worker)


def test_unknown_queue_is_refused(tmp_path):
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "cli", "worker", "--queues", "xen"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "xen" in result.stderr
