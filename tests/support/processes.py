"""Starting `octoprov` commands as the tests' own processes, each in its own session, and
stopping them by process group so no child (a Celery pool worker, gunicorn's workers) survives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def start_octoprov(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, **kwargs)


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """Signal the process's group, wait, and SIGKILL the group if it does not go in time."""
    stop_groups([process], sig, grace)


def stop_groups(processes: list[subprocess.Popen], sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """``stop_group`` for several processes at once: all are signalled first, so their shutdowns overlap
    instead of adding up; the groups still running ``grace`` seconds later are killed."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Managed:
    """A context manager that undoes whatever ``_create`` set up, even when ``_create`` fails half-way
    (``close`` must cope with a partial set-up)."""

    def _create(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def process_table() -> Iterator[tuple[int, list[str]]]:
    """Every process on the machine as its PID and the fields of ``/proc/PID/stat`` after the command
    name (state, parent PID, process group, ...); a process that ends while being read is left out."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        yield int(stat.parent.name), fields
