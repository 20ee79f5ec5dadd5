"""A real smbd serving the WinPE share with the smb.conf Octoprov generates, and smbclient as WinPE.

Each server gets its own network namespace (``opw<pid><tag>``, the address 198.51.100.10 on its
loopback), so nothing listens on the host's interfaces and two servers cannot meet. The
configuration comes from ``python -m octoprov.answerfiles.samba`` with the ``OCTOPROV_*`` variables
the test gives, as docs/winpe-share.md tells an operator; ``--samba-dir`` keeps Samba's own files
(passdb, locks, PID files, logs) in the test's folder, and smbclient gets a configuration of its
own for the same reason. ``ip netns exec`` gives each command a private mount namespace, in which the
servers see the test's copy of ``/etc/passwd`` with the account a Samba user needs (the host's user
database is never written) and a log folder of the test's for what Samba writes before it reads smb.conf.

smbd runs in the foreground, in its own session, and is stopped by process group; samba-dcerpcd,
which smbd starts on demand in a session of its own (share listings go through it), is stopped by
the PID file it writes; whatever is left in the namespace is killed by PID before it is deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest

from octoprov.answerfiles.samba import MADE_BEFOREHAND, samba_dir_lines
from tests.support import ROOT, namespaces
from tests.support.processes import Managed, stop_group

PREFIX = "opw"  # namespaces opw<pid><tag>; netlab uses opv, test_multihost opm
ADDRESS = "198.51.100.10"
WORK_PREFIX = "octoprov-smbd-"  # /tmp/octoprov-smbd-<pid>-*: a folder the guest account can read
SMB2_OR_LATER = ("-m", "SMB3", "--option=client min protocol=SMB2")  # WinPE of Windows 10 1709 and later
NT1_ONLY = ("--option=client max protocol=NT1", "--option=client min protocol=NT1")  # WinPE before 1709
PROGRAMS = ("ip", "ss", "smbd", "smbclient", "smbpasswd", "testparm")
# samba-dcerpcd and its rpcd_* workers, which smbd starts on demand, write a banner to the build's log folder
# before they read `log file` from smb.conf; the servers' mount namespace shows them a folder of the test's.
BUILD_LOG_DIR = Path("/var/log/samba")
# Bind-mounts each SOURCE TARGET pair up to "--", then runs the rest, in the mount namespace ip netns exec made.
_PRIVATE_VIEW = ('while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; shift; exec "$@"')


def _samba_env() -> dict[str, str]:
    """No winbindd belongs to these servers; a host's (another Samba on the machine, such as the AD DC of the
    domain-join tests) would otherwise map the account's SID to its own IDs, and the logon would fail."""
    return {**os.environ, "_NO_WINBINDD": "1"}


def unusable_reason() -> str | None:
    """Why no smbd can be started in a namespace here, or None."""
    if os.geteuid() != 0:
        return "smbd in a network namespace needs root"
    for program in PROGRAMS:
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian packages iproute2, samba, smbclient: make system-packages)"
    probe = f"{PREFIX}{os.getpid()}probe"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"ip netns add does not work here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def unusable(reason: str) -> NoReturn:
    """Skip, or fail under CI (CI=true), as the other labs do: CI must run the real share."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"WinPE share lab unusable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _pid_alive(pid: int) -> bool:
    """A zombie counts as gone: a process re-parented to an init that does not reap stays one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def remove_stale() -> None:
    """Namespaces and folders of earlier runs whose pytest was killed before it could clean up."""
    namespaces.remove_stale(PREFIX)
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*"):
        pid = folder.name.removeprefix(WORK_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


class ShareServer(Managed):
    """smbd with the generated configuration in a namespace of its own; a context manager that undoes all.

    ``environ`` holds the ``OCTOPROV_*`` settings the configuration is generated from; with
    ``OCTOPROV_WINPE_SHARE_USER`` the account is added as the docs say (``smbpasswd -a``)."""

    def __init__(self, tag: str, environ: dict[str, str]):
        self.namespace = f"{PREFIX}{os.getpid()}{tag}"
        self.environ = environ
        self.user = environ.get("OCTOPROV_WINPE_SHARE_USER") or None
        self.workdir = Path()
        self.process: subprocess.Popen[bytes] | None = None
        self._namespace_added = False

    # -- the folders, the files ----------------------------------------------------------------------

    @property
    def images(self) -> Path:
        return self.workdir / "images"

    @property
    def drivers(self) -> Path:
        return self.workdir / "drivers"

    @property
    def samba_dir(self) -> Path:
        return self.workdir / "samba"

    @property
    def conf(self) -> Path:
        return self.workdir / "smb.conf"

    def log(self) -> str:
        path = self.workdir / "smbd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- set-up and tear-down ------------------------------------------------------------------------

    def _create(self) -> None:
        remove_stale()
        # Not below pytest's tmp_path: its folders are 0700, and smbd reads the share as nobody (guest)
        # or as the account, each of whom must be able to reach the files, as on a real host.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
        self.workdir.chmod(0o755)
        for folder in (self.images, self.drivers):
            folder.mkdir(mode=0o755)
        (self.workdir / "build-log").mkdir(mode=0o700)
        for root in (self.samba_dir, self.workdir / "client"):
            for sub, mode in MADE_BEFOREHAND.items():
                (root / sub).mkdir(mode=mode, parents=True)
        self.conf.write_text(self._generate())
        # smbclient reads no /etc/samba/smb.conf and keeps its messaging files out of /run/samba
        (self.workdir / "client.conf").write_text(
            "\n".join(["[global]", *samba_dir_lines(str(self.workdir / "client"))]) + "\n")
        if self.user:
            self._write_user_database(self.user)
        self._ip("netns", "add", self.namespace)
        self._namespace_added = True
        self._ip("-n", self.namespace, "link", "set", "lo", "up")
        self._ip("-n", self.namespace, "addr", "add", f"{ADDRESS}/24", "dev", "lo")
        if self.user:
            password = self.environ["OCTOPROV_WINPE_SHARE_PASSWORD"]
            added = subprocess.run(self._argv(["smbpasswd", "-c", str(self.conf), "-s", "-a", self.user]),
                                   input=f"{password}\n{password}\n", capture_output=True, text=True, timeout=30,
                                   env=_samba_env())
            if added.returncode != 0:
                raise RuntimeError(f"smbpasswd -a {self.user} failed: {added.stdout}{added.stderr}")
        log = open(self.workdir / "smbd.log", "ab")  # noqa: SIM115 - the child keeps it; closed below
        try:
            # `ip netns exec` and the shell exec smbd: the PID (and the process group) are smbd's
            self.process = subprocess.Popen(
                self._argv(["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(self.conf)]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=_samba_env())
        finally:
            log.close()
        self._wait_listening(445)

    def close(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=10)
            self.process = None
        helper = self.samba_dir / "run" / "samba-dcerpcd.pid"
        if helper.exists():
            self._stop_helper(int(helper.read_text().split()[0]))
        if self._namespace_added:
            namespaces.delete(self.namespace)
            self._namespace_added = False
        if self.workdir != Path() and self.workdir.name.startswith(WORK_PREFIX):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _generate(self) -> str:
        env = {key: value for key, value in os.environ.items() if not key.startswith("OCTOPROV_")}
        env.update(self.environ, OCTOPROV_DATA_DIR=str(self.workdir / "data"))
        result = subprocess.run(
            [sys.executable, "-m", "octoprov.answerfiles.samba", "--images-path", str(self.images),
             "--drivers-path", str(self.drivers), "--samba-dir", str(self.samba_dir)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"generating smb.conf failed: {result.stderr}")
        return result.stdout

    def _write_user_database(self, user: str) -> None:
        """/etc/passwd and /etc/group with the account, as `useradd` would add it, for this namespace only."""
        passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
        taken = {int(line.split(":")[2]) for text in (passwd, group) for line in text.splitlines()
                 if line.count(":") >= 3 and line.split(":")[2].isdigit()}
        uid = next(n for n in range(64000, 65000) if n not in taken)
        (self.workdir / "passwd").write_text(
            passwd.rstrip("\n") + f"\n{user}:x:{uid}:{uid}:WinPE share:/nonexistent:/usr/sbin/nologin\n")
        (self.workdir / "group").write_text(group.rstrip("\n") + f"\n{user}:x:{uid}:\n")

    def _argv(self, argv: list[str]) -> list[str]:
        """``argv`` in the namespace, seeing the test's account database and log folder, not the host's."""
        binds: list[str] = []
        if self.user:
            binds += [str(self.workdir / "passwd"), "/etc/passwd", str(self.workdir / "group"), "/etc/group"]
        if BUILD_LOG_DIR.is_dir():
            binds += [str(self.workdir / "build-log"), str(BUILD_LOG_DIR)]
        return ["ip", "netns", "exec", self.namespace, "sh", "-c", _PRIVATE_VIEW, "sh", *binds, "--", *argv]

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)

    def _stop_helper(self, pid: int) -> None:
        """samba-dcerpcd by its PID file, if that PID is still this server's helper (not a reused PID)."""
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if not (command[0].endswith(b"samba-dcerpcd") and f"--configfile={self.conf}".encode() in command):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _wait_listening(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while port not in self.listening_ports():
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smbd did not listen on {port}:\n{self.log()}")
            time.sleep(0.05)

    # -- what the tests ask --------------------------------------------------------------------------

    def listening_ports(self) -> set[int]:
        listing = subprocess.run(["ip", "netns", "exec", self.namespace, "ss", "-tlnH"],
                                 capture_output=True, text=True, timeout=30).stdout
        return {int(port) for port in re.findall(r":(\d+)\s", listing)}

    def smbclient(self, target: str, *options: str, user: str = "guest", password: str = "",
                  commands: str | None = None) -> subprocess.CompletedProcess[str]:
        """``smbclient //198.51.100.10/<target>`` (``-L`` for the list of shares when target is empty) as
        ``user`` (``guest`` with an empty password: what WinPE's ``net use ... "" /user:guest`` sends)."""
        argv = ["smbclient", "-s", str(self.workdir / "client.conf"), *options, "-U", f"{user}%{password}"]
        argv += [f"//{ADDRESS}/{target}"] if target else ["-L", f"//{ADDRESS}"]
        if commands is not None:
            argv += ["-c", commands]
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv], capture_output=True, text=True,
                              timeout=30)

    def shares(self, *options: str, user: str = "guest", password: str = "") -> set[str]:
        """The disk shares ``smbclient -L`` lists (through samba-dcerpcd, which smbd starts on demand)."""
        listing = self.smbclient("", *options, user=user, password=password)
        assert listing.returncode == 0, listing.stdout + listing.stderr + self.log()
        return set(re.findall(r"^\s+(\S+)\s+Disk\b", listing.stdout, re.MULTILINE))
