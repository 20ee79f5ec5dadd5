"""`octoprov healthcheck ROLE` against the real services, each healthy and unhealthy: the API (gunicorn), Flower,
a Celery worker and beat, the TFTP server of `octoprov pxe`, and smbd serving the generated WinPE share.

The check runs as the container engine runs it: the `octoprov` command in a process of its own, with the
role's settings in its environment (for samba, inside the network namespace smbd listens in). Healthy: exit 0;
unhealthy: exit 1 and one line on stderr.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from octoprov.healthcheck import SMB2_DIALECTS, beat_max_age
from octoprov.netboot.tftp import TftpServer
from octoprov.settings import Settings
from tests.support import ROOT, smbd
from tests.support.live import LiveApi, free_port, start_live_api
from tests.support.processes import start_octoprov, stop_group
from tests.support.smbd import ShareServer
from workers.app import make_celery

START_DEADLINE_S = 60
WORKER_DB = 9  # the worker here has Celery's default name: on a Redis database of its own, no other test's answers


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The process environment without the caller's OCTOPROV_* settings, with these."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCTOPROV_")}
    return {**env, "OCTOPROV_DATA_DIR": str(data_dir), "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode(),
            **settings}


def _healthcheck(*args: str, env: dict[str, str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cli", "healthcheck", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _assert_healthy(result: subprocess.CompletedProcess[str], role: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"healthy: {role}"


def _assert_unhealthy(result: subprocess.CompletedProcess[str], role: str, *phrases: str) -> str:
    """The one line on stderr, which names the role and each of ``phrases``."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"unhealthy: {role}: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0]
    return lines[0]


def _wait_healthy(*args: str, env: dict[str, str], process: subprocess.Popen[bytes], log: Path
                  ) -> subprocess.CompletedProcess[str]:
    """Run the check until it passes (a service that starts is not healthy yet: compose's start_period)."""
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        assert process.poll() is None, f"the service exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        result = _healthcheck(*args, "--timeout", "1", env=env)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return start_octoprov(*args, env=env, stdout=out, stderr=subprocess.STDOUT)


# -- api -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    api = start_live_api(tmp_path_factory.mktemp("api") / "var")
    yield api
    api.stop()


def test_api_is_healthy_on_its_configured_port(live_api: LiveApi) -> None:
    env = {**live_api.env, "OCTOPROV_API_HOST": "0.0.0.0"}  # noqa: S104 - as in the image: asked on 127.0.0.1
    _assert_healthy(_healthcheck("api", env=env), "api")  # the port from OCTOPROV_API_PORT
    port = live_api.url.rsplit(":", 1)[1]
    _assert_healthy(_healthcheck("api", "--port", port, env={**env, "OCTOPROV_API_PORT": "8080"}), "api")


def test_api_is_unhealthy_when_nothing_listens(live_api: LiveApi, tmp_path: Path) -> None:
    result = _healthcheck("api", "--port", str(free_port()), env=_env(tmp_path))
    _assert_unhealthy(result, "api", "/api/v1/swagger.json", "Connection refused")


# -- flower --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flower(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    """Flower as compose runs it: on 0.0.0.0, behind basic authentication."""
    folder = tmp_path_factory.mktemp("flower")
    env = _env(folder / "var", OCTOPROV_BROKER_URL=redis_url, FLOWER_BASIC_AUTH="admin:flower-pw")
    port = free_port()
    process = _start(["flower", "--port", str(port), "--address", "0.0.0.0"], env,  # noqa: S104 - as compose
                     folder / "flower.out")
    try:
        _assert_healthy(_wait_healthy("flower", "--port", str(port), env=env, process=process,
                                      log=folder / "flower.out"), "flower")
        yield port, env
    finally:
        stop_group(process)


@pytest.mark.redis
def test_flower_is_healthy_without_credentials_though_it_asks_for_them(flower: tuple[int, dict[str, str]]) -> None:
    port, env = flower
    _assert_healthy(_healthcheck("flower", "--port", str(port), env=env), "flower")
    # the rest of Flower does want the credentials: the endpoint is open on purpose, not by a lax set-up
    assert requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10).status_code == 401


@pytest.mark.redis
def test_flower_is_unhealthy_when_nothing_listens_or_something_else_answers(
        flower: tuple[int, dict[str, str]], live_api: LiveApi) -> None:
    _, env = flower
    closed = _healthcheck("flower", "--port", str(free_port()), env=env)
    _assert_unhealthy(closed, "flower", "/healthcheck", "Connection refused")
    api_port = live_api.url.rsplit(":", 1)[1]  # an HTTP server, but not Flower
    _assert_unhealthy(_healthcheck("flower", "--port", api_port, env=env), "flower", "answered 404")


# -- worker --------------------------------------------------------------------------------------------------


def _redis_database(redis_url: str, number: int) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{number}"


@pytest.fixture(scope="module")
def default_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A worker started without --hostname: Celery's default node name, celery@<host>."""
    folder = tmp_path_factory.mktemp("worker")
    env = _env(folder / "var", OCTOPROV_BROKER_URL=_redis_database(redis_url, WORKER_DB))
    process = _start(["worker", "--queues", "default", "--concurrency", "1"], env, folder / "worker.out")
    try:
        _assert_healthy(_wait_healthy("worker", env=env, process=process, log=folder / "worker.out"), "worker")
        yield env
    finally:
        stop_group(process)


@pytest.mark.redis
def test_worker_is_healthy_by_its_default_name_and_by_a_pattern(default_worker: dict[str, str]) -> None:
    _assert_healthy(_healthcheck("worker", env=default_worker), "worker")
    _assert_healthy(_healthcheck("worker", "--hostname", "celery@%h", env=default_worker), "worker")
    _assert_healthy(_healthcheck("worker", "--hostname", f"celery@{socket.gethostname()}", env=default_worker),
                    "worker")


@pytest.mark.redis
def test_worker_is_unhealthy_by_another_name(default_worker: dict[str, str]) -> None:
    result = _healthcheck("worker", "--hostname", "kvm@%h", "--timeout", "1", env=default_worker)
    _assert_unhealthy(result, "worker", f"kvm@{socket.gethostname()} did not answer a ping within 1 s")


@pytest.mark.redis
def test_worker_is_unhealthy_once_stopped(redis_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path / "var", OCTOPROV_BROKER_URL=redis_url)
    node = f"hc{os.getpid()}@%h"
    process = _start(["worker", "--queues", "kvm", "--concurrency", "1", "--hostname", node], env,
                     tmp_path / "worker.out")
    try:
        _assert_healthy(_wait_healthy("worker", "--hostname", node, env=env, process=process,
                                      log=tmp_path / "worker.out"), "worker")
    finally:
        stop_group(process)
    _assert_unhealthy(_healthcheck("worker", "--hostname", node, "--timeout", "1", env=env), "worker",
                      "did not answer a ping")


def test_worker_is_unhealthy_without_a_broker_and_keeps_its_password(tmp_path: Path) -> None:
    env = _env(tmp_path / "var", OCTOPROV_BROKER_URL=f"redis://:hc-s3cret-pw@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    result = _healthcheck("worker", "--hostname", "kvm@%h", env=env)
    assert time.monotonic() - started < 10
    line = _assert_unhealthy(result, "worker", "redis://:**@127.0.0.1", "Connection refused")
    assert "hc-s3cret-pw" not in result.stdout + result.stderr, line


def test_worker_is_unhealthy_on_the_embedded_broker(tmp_path: Path) -> None:
    _assert_unhealthy(_healthcheck("worker", env=_env(tmp_path / "var")), "worker", "embedded broker")


# -- beat ----------------------------------------------------------------------------------------------------


def test_beat_bound_follows_its_shortest_interval(tmp_path: Path) -> None:
    """Celery writes the schedule every 180 s at the first wake after them; beat wakes every interval."""
    for every, bound in (("15", 210.0), ("60", 300.0), ("1000", 780.0)):  # beyond 300 s: the loop's own wake
        settings = Settings(data_dir=tmp_path, deadline_check_s=int(every))
        assert beat_max_age(make_celery(settings)) == bound


def test_beat_is_healthy_while_it_ticks_and_unhealthy_once_it_stops(tmp_path: Path) -> None:
    env = _env(tmp_path / "var")  # the embedded broker: beat's file does not depend on the broker
    _assert_unhealthy(_healthcheck("beat", env=env), "beat", "no schedule file", "beat has not started")
    process = _start(["beat"], env, tmp_path / "beat.out")
    try:
        _assert_healthy(_wait_healthy("beat", env=env, process=process, log=tmp_path / "beat.out"), "beat")
        # A beat that hangs writes no more. Freeze it, then let its files age past the bound (210 s with the
        # default 15 s interval) rather than wait for them to.
        os.kill(process.pid, signal.SIGSTOP)
        files = list((tmp_path / "var").glob("celerybeat-schedule*"))
        assert files
        past = time.time() - 240
        for path in files:
            os.utime(path, (past, past))
        _assert_unhealthy(_healthcheck("beat", env=env), "beat", "celerybeat-schedule last written 24",
                          "s ago, more than 210 s: beat has stopped ticking")
        fresh = time.time() - 200
        for path in files:
            os.utime(path, (fresh, fresh))
        _assert_healthy(_healthcheck("beat", env=env), "beat")
    finally:
        os.kill(process.pid, signal.SIGCONT)
        stop_group(process)


# -- pxe -----------------------------------------------------------------------------------------------------


def test_pxe_is_healthy_while_its_tftp_server_answers_and_quiet_about_it(tmp_path: Path) -> None:
    port = _free_udp_port()
    env = _env(tmp_path / "var", OCTOPROV_TFTP_HOST="127.0.0.1", OCTOPROV_TFTP_PORT=str(port))
    process = _start(["pxe", "--no-proxydhcp"], env, tmp_path / "pxe.out")
    try:
        _assert_healthy(_wait_healthy("pxe", env=env, process=process, log=tmp_path / "pxe.out"), "pxe")
        for _ in range(3):
            _assert_healthy(_healthcheck("pxe", env=env), "pxe")
    finally:
        stop_group(process)
    # each check ended its transfer after the OACK, which the server notes at DEBUG only
    log = (tmp_path / "var" / "log" / "pxe.log").read_text()
    assert "TFTP server on 127.0.0.1" in log and "grub/grub.cfg' to" not in log, log
    _assert_unhealthy(_healthcheck("pxe", "--timeout", "1", env=env), "pxe",
                      f"TFTP 127.0.0.1:{port}: no answer", "within 1 s")


def test_pxe_is_unhealthy_when_the_server_refuses(tmp_path: Path) -> None:
    empty = tmp_path / "tftp"
    empty.mkdir()
    with TftpServer(empty, host="127.0.0.1", port=0) as server:  # its root lacks what `octoprov pxe` writes
        result = _healthcheck("pxe", "--port", str(server.port), env=_env(tmp_path / "var"))
    _assert_unhealthy(result, "pxe", "refused 'grub/grub.cfg': File not found")


# -- samba ---------------------------------------------------------------------------------------------------


@functools.cache
def _smbd_unusable() -> str | None:
    return smbd.unusable_reason()


@pytest.fixture
def share() -> Iterator[ShareServer]:
    reason = _smbd_unusable()
    if reason:
        smbd.unusable(reason)
    with ShareServer("h", {"OCTOPROV_WINPE_SHARE_SERVER": smbd.ADDRESS}) as server:
        yield server


def test_samba_is_healthy_while_smbd_answers_and_unhealthy_once_it_stops(share: ShareServer, tmp_path: Path) -> None:
    env = _env(tmp_path / "var")
    _assert_healthy(_healthcheck("samba", env=env, netns=share.namespace), "samba")  # 127.0.0.1:445 in there
    dialect = subprocess.run(
        ["ip", "netns", "exec", share.namespace, sys.executable, "-c",
         "from octoprov.healthcheck import negotiate_smb2; print(negotiate_smb2())"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert dialect.stdout.strip() in SMB2_DIALECTS.values(), dialect.stderr
    assert share.process is not None
    stop_group(share.process, grace=10)
    share.process = None
    _assert_unhealthy(_healthcheck("samba", env=env, netns=share.namespace), "samba",
                      "SMB 127.0.0.1:445: Connection refused")


@contextlib.contextmanager
def _tcp_peer(answer: bytes | None) -> Iterator[int]:
    """A listener on 127.0.0.1 that reads what comes and answers ``answer``, or nothing at all (None)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)
            if answer is not None:
                connection.recv(4096)
                connection.sendall(answer)
        for connection in held:
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_samba_is_unhealthy_when_nothing_or_something_else_listens(tmp_path: Path) -> None:
    env = _env(tmp_path / "var")
    _assert_unhealthy(_healthcheck("samba", "--port", str(free_port()), env=env), "samba", "Connection refused")
    with _tcp_peer(answer=None) as silent_port:
        _assert_unhealthy(_healthcheck("samba", "--port", str(silent_port), "--timeout", "1", env=env), "samba",
                          f"SMB 127.0.0.1:{silent_port}: no answer within 1 s")
    with _tcp_peer(answer=b"HTTP/1.1 400 Bad Request\r\n\r\n") as http_port:
        _assert_unhealthy(_healthcheck("samba", "--port", str(http_port), env=env), "samba",
                          f"SMB 127.0.0.1:{http_port}: not an SMB answer")
