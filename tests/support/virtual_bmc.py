"""An IPMI BMC for the tests: OpenStack's virtualbmc in front of a libvirt domain, listening on 127.0.0.1
only. ``vbmcd`` runs in the foreground on a configuration of its own (``VIRTUALBMC_CONFIG``: its
config_dir, PID file, log and control port in the test's folder), so it never reads or writes ~/.vbmc;
``vbmc add`` and ``vbmc start`` give the domain its BMC on a free UDP port. vbmcd and the BMC processes it
forks are stopped by process group.

virtualbmc keeps every boot device it is given in the domain's definition (``<os><boot dev=.../>``), so a
"one-time" network boot lasts until another device is set, like the boot overrides of some real BMCs.

Run as a module (``python -m tests.support.virtual_bmc``) it is vbmcd, answering like a BMC that offers
only cipher suite 3 (HMAC-SHA1): pyghmi's server side accepts any proposal and then signs with SHA-1, so
pyghmi's own client, which proposes SHA-256 first, fails to log in to it. Refusing the proposal, as a
suite-3 BMC does, makes the client propose again with SHA-1.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT
from tests.support.live import free_port
from tests.support.processes import stop_group

HOST = "127.0.0.1"
USER, PASSWORD = "admin", "ipmi-Secret-7"
START_TIMEOUT_S = 60
# an RMCP+ open-session proposal of cipher suite 3: authentication HMAC-SHA1, integrity HMAC-SHA1-96
SUITE_3 = bytes([0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0])
INVALID_AUTHENTICATION_ALGORITHM = 0x04  # the RMCP+ status a BMC answers a proposal it does not support with


@dataclass(frozen=True)
class VirtualBmc:
    host: str
    port: int
    username: str
    password: str

    @property
    def address(self) -> str:
        """The BMC's address as a machine is registered with it."""
        return f"ipmi://{self.host}:{self.port}"


@contextlib.contextmanager
def virtual_bmc(workdir: Path, domain: str, libvirt_uri: str) -> Iterator[VirtualBmc]:
    """A BMC for libvirt domain ``domain`` (of the libvirt at ``libvirt_uri``) while the context lasts."""
    (workdir / "domains").mkdir(parents=True, exist_ok=True)  # vbmcd lists it at start
    control_port = free_port()
    config = configparser.ConfigParser(interpolation=None)
    config["default"] = {"config_dir": str(workdir / "domains"), "pid_file": str(workdir / "vbmcd.pid"),
                         "server_port": str(control_port)}
    config["log"] = {"logfile": str(workdir / "vbmcd.log")}
    with (workdir / "virtualbmc.conf").open("w") as file:
        config.write(file)
    env = {**os.environ, "VIRTUALBMC_CONFIG": str(workdir / "virtualbmc.conf")}
    log = open(workdir / "vbmcd.out", "ab")  # noqa: SIM115 - the child keeps it; closed below
    try:
        process = subprocess.Popen([sys.executable, "-m", "tests.support.virtual_bmc"], env=env, cwd=ROOT,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    finally:
        log.close()
    try:
        _wait(lambda: _tcp_listening(control_port), process, workdir, "vbmcd's control port")
        port = free_port(socket.SOCK_DGRAM)
        _vbmc(env, "add", domain, "--port", str(port), "--username", USER, "--password", PASSWORD,
              "--libvirt-uri", libvirt_uri, "--address", HOST)
        _vbmc(env, "start", domain)
        _wait(lambda: _udp_bound(port), process, workdir, f"the BMC of {domain} on UDP port {port}")
        yield VirtualBmc(HOST, port, USER, PASSWORD)
    finally:
        stop_group(process, grace=10)


def _program(name: str) -> str:
    """A console script of the virtualenv the tests run in."""
    return str(Path(sys.executable).parent / name)


def _vbmc(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([_program("vbmc"), *args], env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"vbmc {args[0]} failed: {result.stderr.strip()[-2000:]}")


def _tcp_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def _udp_bound(port: int) -> bool:
    """Something holds the UDP port: binding it ourselves fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _wait(ready, process: subprocess.Popen, workdir: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            log = "\n".join(path.read_text(errors="replace")[-2000:] for path in
                            (workdir / "vbmcd.out", workdir / "vbmcd.log") if path.exists())
            raise RuntimeError(f"{what} did not come up: {log}")
        time.sleep(0.2)


def _suite_3_only() -> None:
    """pyghmi's BMC side refuses an open-session proposal other than cipher suite 3 (see the module's doc)."""
    from pyghmi.ipmi.private import serversession

    answer = serversession.ServerSession.create_open_session_response

    def create_open_session_response(self, request):
        request = bytearray(request)
        if bytes(request[8:24]) != SUITE_3:
            return bytearray([request[0], INVALID_AUTHENTICATION_ALGORITHM, 0, 0]) + request[4:8]
        return answer(self, request)

    serversession.ServerSession.create_open_session_response = create_open_session_response


if __name__ == "__main__":
    _suite_3_only()
    from virtualbmc.cmd import vbmcd

    sys.exit(vbmcd.main(["--foreground"]))
