"""Following a task from the command line: `octoprov task watch` and `octoprov task logs --follow`.

``follow`` is the one place that learns what changed (it polls the database); the renderers only
draw what it yields, so a later push source (server-sent events, database notifications) replaces
``follow`` alone.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from octoprov import states, tasks
from octoprov.db import Database
from octoprov.pipeline import StepStatus

# `octoprov task watch` exits with the task's outcome
EXIT_CODES = {states.COMPLETED: 0, states.FAILED: 1, states.CANCELLED: 2}
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's code for SIGINT; the task goes on
EXIT_UNWATCHABLE = 3  # no such task: none of the outcomes' codes

POLL_INTERVAL_S = 0.5
LOG_BATCH = 500  # the API's largest page of log entries


@dataclass(frozen=True)
class Progress:
    """Where a task stands, with the log entries written since the previous reading."""

    task_id: int
    hostname: str
    status: str
    done: int
    total: int
    current_step: str | None
    error_message: str | None
    new_logs: list[tasks.LogView]

    @property
    def final(self) -> bool:
        return self.status in states.FINAL


def read_progress(database: Database, task_id: int, after_log_id: int | None, tail: int) -> Progress:
    """One reading. The task is read before its log, so an entry written with its last change of
    state is never missed. ``after_log_id`` None: start with the last ``tail`` entries."""
    with database.session() as session:
        view = tasks.TaskView.of(tasks.get_task(session, task_id))
        if after_log_id is None:
            entries = tasks.latest_logs(session, task_id, tail) if tail > 0 else []
        else:
            entries = tasks.task_logs(session, task_id, None, after_log_id, LOG_BATCH)
        logs = [tasks.LogView.of(entry) for entry in entries]
    return Progress(view.id, view.hostname, view.status, sum(step.status == StepStatus.DONE for step in view.steps),
                    len(view.steps), view.current_step, view.error_message, logs)


def follow(database: Database, task_id: int, *, after: int | None = None, tail: int = 0,
           interval: float = POLL_INTERVAL_S, sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """Readings of the task until it is final (that reading is the last): one at once, then one per
    ``interval`` while nothing is new. The log starts after entry ``after``, or with the last
    ``tail`` entries. Raises NotFound for an unknown task."""
    while True:
        progress = read_progress(database, task_id, after, tail)
        if progress.new_logs:
            after = progress.new_logs[-1].id
        elif after is None:
            after = 0  # an empty log so far: from now on, everything
        yield progress
        if progress.final and len(progress.new_logs) < LOG_BATCH:
            return
        if len(progress.new_logs) < LOG_BATCH:  # a full batch: read on at once
            sleep(interval)


def log_line(entry: tasks.LogView) -> str:
    """One log entry as `task logs` and `task watch` print it (times in UTC)."""
    step = f" [{entry.step}]" if entry.step else ""
    return f"{entry.timestamp:%Y-%m-%d %H:%M:%S} {entry.level.upper():<5}{step} {entry.message or ''}"


def _outcome(progress: Progress) -> str:
    line = f"task {progress.task_id} ({progress.hostname}) {progress.status}"
    return line + (f": {progress.error_message}" if progress.error_message else "")


class PlainRenderer:
    """For a pipe or a file (logs, CI): plain lines, one per log entry and one per change of the task."""

    def __init__(self, out: TextIO):
        self.out = out
        self.last: tuple[str, int, str | None] | None = None

    def update(self, progress: Progress) -> None:
        for entry in progress.new_logs:
            self.out.write(log_line(entry) + "\n")
        state = (progress.status, progress.done, progress.current_step)
        if state != self.last and not progress.final:
            self.out.write(f"task {progress.task_id}: {progress.status}, {progress.done}/{progress.total} steps done"
                           + (f"; now: {progress.current_step}" if progress.current_step else "") + "\n")
        self.last = state
        self.out.flush()

    def finish(self, progress: Progress) -> None:
        self.out.write(_outcome(progress) + "\n")
        self.out.flush()

    def interrupt(self) -> None:
        self.out.flush()


CLEAR_LINE = "\r\x1b[2K"  # back to the line's start, erase it: the status line is redrawn in place
BAR_WIDTH = 24


class TerminalRenderer:
    """For a terminal: new log entries scroll above one status line (a bar of the steps done, the
    state, the current step) that is redrawn in place."""

    def __init__(self, out: TextIO):
        self.out = out
        self.drawn: str | None = None

    def status_line(self, progress: Progress) -> str:
        filled = BAR_WIDTH * progress.done // progress.total if progress.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"[{bar}] {progress.done}/{progress.total} {progress.status}"
        if progress.current_step and not progress.final:
            line += f": {progress.current_step}"
        width = shutil.get_terminal_size().columns
        return line[: max(width - 1, 20)]  # never wrap: a wrapped line cannot be redrawn in place

    def update(self, progress: Progress) -> None:
        line = self.status_line(progress)
        if line == self.drawn and not progress.new_logs:
            return
        self.out.write(CLEAR_LINE)
        for entry in progress.new_logs:
            self.out.write(log_line(entry) + "\n")
        self.out.write(line)
        self.out.flush()
        self.drawn = line

    def finish(self, progress: Progress) -> None:
        self.out.write(CLEAR_LINE + self.status_line(progress) + "\n" + _outcome(progress) + "\n")
        self.out.flush()

    def interrupt(self) -> None:
        self.out.write("\n")  # keep the last status line; the shell's prompt goes below it
        self.out.flush()


Renderer = PlainRenderer | TerminalRenderer


def renderer_for(out: TextIO) -> Renderer:
    return TerminalRenderer(out) if out.isatty() else PlainRenderer(out)


def watch(database: Database, task_id: int, renderer: Renderer, *, tail: int,
          interval: float = POLL_INTERVAL_S) -> int:
    """Draw the task until it is final and return the exit code of its outcome. Ctrl-C
    (KeyboardInterrupt) is the caller's to handle: the task is left as it is."""
    last: Progress | None = None
    try:
        for progress in follow(database, task_id, tail=tail, interval=interval):
            renderer.update(progress)
            last = progress
    except KeyboardInterrupt:
        renderer.interrupt()
        raise
    assert last is not None and last.final  # follow ends only on a final reading
    renderer.finish(last)
    return EXIT_CODES[last.status]
