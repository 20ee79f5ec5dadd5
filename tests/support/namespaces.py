"""Network namespaces the test labs make (netlab, the Samba DC, smbd): named after the pytest process
that made them, so a lab of an earlier run whose pytest was killed can be recognised and removed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unusable(prefix: str) -> str | None:
    """Why namespaces cannot be made here (a probe is added and deleted), or None."""
    probe = f"{prefix}{os.getpid()}probe"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"ip netns add does not work here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def delete(name: str) -> None:
    """The namespace, its leftover processes killed by PID first."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def remove_stale(prefix: str, suffixes: str = "[a-z]+") -> None:
    """Namespaces ``<prefix><pid><suffix>`` of earlier runs whose pytest (that PID) is gone."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for namespace, pid in re.findall(rf"^({prefix}(\d+)(?:{suffixes}))\b", listing, re.MULTILINE):
        if int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            delete(namespace)
