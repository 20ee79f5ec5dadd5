"""A real libvirtd for the KVM end-to-end tests, started inside the lab's site namespace so the
domains it starts land on the lab's bridge and nowhere else (recipe of ../shared/NETBOOT-LAB.md).

The host's /etc/libvirt is never touched: a copy, with QEMU running as root (else libvirt
re-probes QEMU for 40-70 s at each start, since /dev/kvm is root-only) and QEMU's output written
to files (no virtlogd needed), is bind-mounted over /etc/libvirt in the private mount namespace
`ip netns exec` gives the daemon. Domains and pools defined here live in that copy and vanish with
it. Only one libvirtd can run on a machine (the sockets under /run/libvirt are shared).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support import netlab
from tests.support.bootservices import unusable
from tests.support.processes import Managed

SOCKET = Path("/run/libvirt/libvirt-sock")
URI = "qemu:///system"
NVRAM_DIR = Path("/var/lib/libvirt/qemu/nvram")
QEMU_CONF_EXTRA = """
# Octoprov test lab: no privilege separation (see tests/support/libvirtlab.py)
user = "root"
group = "root"
stdio_handler = "file"
security_driver = "none"
"""


def require_lab() -> None:
    """Skip the test where the network lab or a libvirtd of its own cannot run on this machine (in CI: fail it)."""
    reason = netlab.unusable_reason() or unusable_reason()
    if reason:
        unusable(reason)


def unusable_reason() -> str | None:
    for program in ("libvirtd", "virsh"):
        if shutil.which(program) is None:
            return f"{program} is not installed (make system-packages)"
    if not Path("/etc/libvirt/qemu.conf").is_file():
        return "/etc/libvirt/qemu.conf is missing (libvirt-daemon-system)"
    if _answers(SOCKET):
        return f"a libvirtd is already running on this machine ({SOCKET}); the lab needs its own"
    return None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class Libvirtd(Managed):
    """libvirtd in ``lab``'s site namespace with a directory storage pool of its own; a context
    manager that destroys every domain it knows, then stops the daemon."""

    def __init__(self, lab: netlab.Lab, pool_name: str):
        self.lab = lab
        self.pool_name = pool_name
        self.config = lab.workdir / "etc-libvirt"
        self.pool_path = lab.workdir / "pool"
        self.process: subprocess.Popen | None = None

    def _create(self) -> None:
        shutil.copytree("/etc/libvirt", self.config, symlinks=True)
        with (self.config / "qemu.conf").open("a") as conf:
            conf.write(QEMU_CONF_EXTRA)
        self.process = self.lab.start(self.lab.site, [
            "sh", "-c", 'mount --bind "$1" /etc/libvirt && exec libvirtd --pid-file "$2"', "libvirtd",
            str(self.config), str(self.lab.workdir / "libvirtd.pid")], "libvirtd.log")
        deadline = time.monotonic() + 60
        while not _answers(SOCKET):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd did not start: {self.lab.log('libvirtd.log')[-2000:]}")
            time.sleep(0.2)
        self.pool_path.mkdir()
        self._remove_pool()  # left active by a daemon that was killed: libvirt keeps its state under /run
        self.virsh("pool-define-as", self.pool_name, "dir", "--target", str(self.pool_path))
        self.virsh("pool-start", self.pool_name)

    def virsh(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def domains(self) -> list[str]:
        return self.virsh("list", "--all", "--name").split()

    def volumes(self) -> list[str]:
        return [line.split()[0] for line in self.virsh("vol-list", self.pool_name).splitlines() if line.strip()]

    def _remove_pool(self) -> None:
        self.virsh("pool-destroy", self.pool_name, check=False)
        self.virsh("pool-undefine", self.pool_name, check=False)

    def close(self) -> None:
        if self.process is not None and _answers(SOCKET):
            for name in self.domains():
                self.virsh("destroy", name, check=False)
                self.virsh("undefine", name, "--nvram", "--remove-all-storage", check=False)
            self._remove_pool()
        if self.process is not None:
            self.lab.stop(self.process)
            self.process = None
        with contextlib.suppress(FileNotFoundError):
            SOCKET.unlink()  # a killed daemon leaves it; the next lab's check reads it as "running"
