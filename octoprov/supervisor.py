"""A small process supervisor for `octoprov up`: API, worker and beat as one group.

A child that dies is restarted with a growing delay; one that keeps dying (five times in
a minute) stops the whole group, so a broken setup fails loudly instead of flapping.
SIGTERM or Ctrl-C stops every child (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    deaths: list[float] = field(default_factory=list)
    restart_at: float = 0.0


class ProcessGroup:
    def __init__(self, children: dict[str, list[str]], *, grace: float = 10.0, max_deaths: int = 5,
                 window: float = 60.0):
        self.children = [Child(name, argv) for name, argv in children.items()]
        self.grace, self.max_deaths, self.window = grace, max_deaths, window
        self._stopping = False

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.argv)
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for child in self.children:
            self._start(child)
        try:
            return self._watch()
        finally:
            self.stop()

    def _watch(self) -> int:
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                if child.process is None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                code = child.process.poll()
                if code is None:
                    continue
                child.process = None
                child.deaths = [t for t in child.deaths if now - t < self.window] + [now]
                if len(child.deaths) >= self.max_deaths:
                    log.error("%s exited %d times within %.0f s; stopping", child.name, len(child.deaths),
                              self.window)
                    return 1
                delay = 2 ** (len(child.deaths) - 1)
                log.warning("%s exited with %s; restarting in %d s", child.name, code, delay)
                child.restart_at = now + delay
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + self.grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def octoprov_command(*args: str) -> list[str]:
    """The argv that runs an `octoprov` subcommand with this same interpreter."""
    return [sys.executable, "-m", "cli", *args]
