"""`octoprov flower` monitors a real worker: through the session Redis, Flower's API lists the worker
and the tasks it registered (by remote inspection, which needs no task events)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import requests
from cryptography.fernet import Fernet

from tests.support.processes import start_octoprov, stop_group

DEADLINE_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return start_octoprov(*args, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.redis
def test_flower_sees_the_worker_and_its_tasks(redis_url, tmp_path):
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(tmp_path / "var"), "OCTOPROV_BROKER_URL": redis_url,
           "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode(), "FLOWER_UNAUTHENTICATED_API": "true"}
    port = _free_port()
    node = f"flower-test-{os.getpid()}@localhost"
    api = f"http://127.0.0.1:{port}/api/workers"
    with open(tmp_path / "worker.out", "wb") as worker_log, open(tmp_path / "flower.out", "wb") as flower_log:
        worker = _start(["worker", "--queues", "default", "--concurrency", "1", "--hostname", node], env, worker_log)
        flower = _start(["flower", "--port", str(port), "--address", "127.0.0.1"], env, flower_log)
    try:
        seen, last = None, None
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.out").read_text()
            assert flower.poll() is None, (tmp_path / "flower.out").read_text()
            try:
                response = requests.get(api, params={"refresh": "1"}, timeout=10)
                last = f"{response.status_code} {response.text[:500]}"
                if response.ok and node in response.json():
                    seen = response.json()[node]
                    if "octoprov.ping" in (seen.get("registered") or []):
                        break
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.5)
        else:
            pytest.fail(f"Flower did not list worker {node} with octoprov.ping within {DEADLINE_S} s; "
                        f"last answer: {last}\nflower:\n{(tmp_path / 'flower.out').read_text()[-3000:]}")
        assert {"default"} <= {queue["name"] for queue in seen.get("active_queues") or []}
    finally:
        stop_group(flower)
        stop_group(worker)
