"""The real API server (`octoprov api`, gunicorn) in a subprocess, for tests that need sockets:
interrupted uploads, schemathesis, log files. Stopped by PID when the test is done."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.support.processes import start_octoprov, stop_group


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing has bound (TCP; ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def octoprov(*args: str, env: dict, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, check=check,
                          capture_output=True, text=True, timeout=120, **kwargs)


@dataclass
class LiveApi:
    url: str
    token: str
    env: dict
    data_dir: Path
    process: subprocess.Popen | None  # set once the server is started

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        stop_group(self.process)


def start_live_api(data_dir: Path, database_url: str | None = None, extra_env: dict | None = None) -> LiveApi:
    port = free_port()
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(data_dir), "OCTOPROV_API_PORT": str(port),
           "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode(), "OCTOPROV_API_WORKERS": "1",
           "OCTOPROV_PUBLIC_URL": f"http://127.0.0.1:{port}", **(extra_env or {})}
    if database_url:
        env["OCTOPROV_DATABASE_URL"] = database_url
    octoprov("db", "upgrade", env=env)
    token = octoprov("token", "create", "live-tests", env=env).stdout.strip()
    return _serve(LiveApi(f"http://127.0.0.1:{port}", token, env, data_dir, None))


def start_api_beside(live: LiveApi) -> LiveApi:
    """A second API server on the first one's database, key and token, listening on a port of its own: what
    a deployment with several API hosts behind a load balancer has."""
    port = free_port()
    env = {**live.env, "OCTOPROV_API_PORT": str(port)}
    return _serve(LiveApi(f"http://127.0.0.1:{port}", live.token, env, live.data_dir, None))


def serve_again(live: LiveApi) -> LiveApi:
    """Start ``live``'s server again on its own port, data and token after it stopped or was killed: a
    restarted API service. The caller makes sure nothing of the old server still holds the port."""
    return _serve(live)


def _serve(live: LiveApi) -> LiveApi:
    """Start ``live``'s server and wait until it answers."""
    live.process = process = start_octoprov("api", env=live.env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"octoprov api exited with {process.returncode}")
        try:
            if requests.get(live.url + "/api/v1/swagger.json", timeout=2).status_code == 200:
                return live
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
            pass
        time.sleep(0.2)
    live.stop()
    raise RuntimeError("octoprov api did not answer within 60 s")
