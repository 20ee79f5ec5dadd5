"""govmomi's vCenter simulator as the vSphere target's peer: a small program (tests/support/vcsim/main.go)
built once from Debian's golang-github-vmware-govmomi-dev with Debian's Go, offline (GOPATH mode over
/usr/share/gocode, no module proxy), and cached under .cache/vcsim/ keyed by the package's version and the
program's source. The session's simulator listens on 127.0.0.1 on a free port over HTTPS with its
self-signed certificate, and is stopped by its PID (and by the kernel, should the test process die).

``python -m tests.support.vcsim`` builds it (``make vcsim``), printing the binary's path.

What the simulator does not model: no guest runs (a powered-on VM boots nothing, so no installer ever
reports back), datastore free space is that of the temporary folder behind it, less the disks created.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.live import free_port
from tests.support.processes import stop_group
from tests.support.servers import _die_with_parent, unavailable

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("vcsim") / "main.go"
CACHE = ROOT / ".cache" / "vcsim"
PACKAGE = "golang-github-vmware-govmomi-dev"
GOPATH = Path("/usr/share/gocode")
USER, PASSWORD = "octoprov@vsphere.local", "vc-Secret-9"


@dataclass(frozen=True)
class Vcsim:
    url: str  # the SDK URL, https://127.0.0.1:PORT/sdk
    port: int
    username: str
    password: str
    thumbprint: str  # SHA-256 of its certificate, hex


def package_version() -> str | None:
    found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True,
                           check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def binary_path(version: str) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return CACHE / f"{version}-{digest}" / "vcsim"


def build() -> Path:
    """The cached simulator, built first if missing (one build at a time: a lock beside the cache)."""
    version = package_version()
    go = shutil.which("go")
    if version is None or go is None or not (GOPATH / "src/github.com/vmware/govmomi/simulator").is_dir():
        raise FileNotFoundError(f"building the vCenter simulator needs Debian's {PACKAGE} and golang-go "
                                "(make system-packages)")
    binary = binary_path(version)
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        binary.parent.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(CACHE), "GOPATH": str(GOPATH),
               "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off", "CGO_ENABLED": "0",
               "GOCACHE": str(CACHE / "gocache")}
        partial = binary.with_suffix(".partial")
        built = subprocess.run([go, "build", "-o", str(partial), str(SOURCE)], env=env, capture_output=True,
                               text=True, check=False)
        if built.returncode != 0:
            raise RuntimeError(f"go build of the vCenter simulator failed:\n{built.stderr[-4000:]}")
        partial.rename(binary)
        shutil.rmtree(CACHE / "gocache", ignore_errors=True)
        return binary


def thumbprint(port: int) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


@contextlib.contextmanager
def simulator(workdir: Path) -> Iterator[Vcsim]:
    """A simulator of its own for the ``with`` block; its first line of output is its SDK URL."""
    binary = build()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "vcsim.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(binary), "-listen", f"127.0.0.1:{port}", "-username", USER, "-password", PASSWORD],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(workdir)}, preexec_fn=_die_with_parent(signal.SIGTERM))
    try:
        deadline = time.monotonic() + 30
        while not log_path.read_text(errors="replace").startswith("https://"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the vCenter simulator did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        url = log_path.read_text().splitlines()[0].strip()
        yield Vcsim(url, port, USER, PASSWORD, thumbprint(port))
    finally:
        stop_group(process, grace=10)


@pytest.fixture(scope="session")
def vcsim(tmp_path_factory) -> Iterator[Vcsim]:
    """One simulator for the session; tests give their VMs names of their own."""
    try:
        build()
    except FileNotFoundError as exc:
        unavailable(str(exc))
    with simulator(tmp_path_factory.mktemp("vcsim")) as running:
        yield running


if __name__ == "__main__":
    print(build())
