"""A throwaway OpenSSH server on loopback, for reaching the lab's libvirtd the way a worker reaches
a remote KVM host: ``qemu+ssh://root@127.0.0.1:PORT/system`` with a key pair and a host key made
for the test. It reads no system configuration (``-f /dev/null``) and is stopped by PID."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.live import free_port
from tests.support.processes import stop_group

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Sshd:
    port: int
    private_key: str  # the client's, OpenSSH format
    host_key: str  # the server's public key line


def unusable_reason() -> str | None:
    if not SSHD.is_file() or shutil.which("ssh-keygen") is None:
        return "OpenSSH is not installed (make system-packages)"
    return None


def _keypair(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "octoprov-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def sshd(workdir: Path, authorized: tuple[str, ...] = ()) -> Iterator[Sshd]:
    """The server; the test's own client key and ``authorized`` public keys may log on as root."""
    workdir.mkdir(parents=True, exist_ok=True)
    _keypair(workdir / "host")
    _keypair(workdir / "client")
    (workdir / "authorized_keys").write_text("".join(f"{key.strip()}\n" for key in
                                                     ((workdir / "client.pub").read_text(), *authorized)))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    port = free_port()
    log = open(workdir / "sshd.log", "ab")  # noqa: SIM115 - the child keeps it; closed below
    try:
        process = subprocess.Popen([
            str(SSHD), "-D", "-e", "-f", "/dev/null", "-h", str(workdir / "host"),
            "-o", f"ListenAddress=127.0.0.1:{port}", "-o", f"AuthorizedKeysFile={workdir / 'authorized_keys'}",
            "-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no", "-o", "StrictModes=no",
            "-o", "UsePAM=no", "-o", "PidFile=none",
        ], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    try:
        deadline = time.monotonic() + 30
        while f"127.0.0.1:{port}" not in subprocess.run(["ss", "-tlnH"], capture_output=True, text=True).stdout:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(workdir / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Sshd(port, (workdir / "client").read_text(), (workdir / "host.pub").read_text().strip())
    finally:
        stop_group(process, grace=10)
