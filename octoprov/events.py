"""Task events as the live streams send them: numbered, resumable, the same in every process.

The ``task_events`` table (filled by database triggers, migration 0010) numbers every change of a task or its
steps and every new log line. An event's id is that row's id, so ``Last-Event-ID`` names a point in one
sequence that every API process reads alike, whichever process or worker wrote the change.

The streams look at the table every ``OCTOPROV_EVENTS_POLL_MS`` (one indexed range query) rather than listen
for PostgreSQL notifications: it works the same on SQLite, needs no connection held per process, and half a
second is as live as a person watching needs.

Ids are handed out when a row is written, not when its transaction commits: on PostgreSQL a later id can
become visible before an earlier one. A reader that moved past the earlier id would never see it, so streams
only go as far as the ``Horizon``: the newest id below which no id is missing. A missing id is waited for
``OCTOPROV_EVENTS_GAP_GRACE_S`` (its transaction may still commit) and then given up (it was rolled back).

Payloads are the views the GET operations answer with (``TaskView``, ``TaskSummaryView``, ``LogView``): the
same masked configuration, never a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select
from sqlalchemy.orm import Session

from octoprov.models import Task, TaskEvent, TaskLog, utcnow
from octoprov.tasks import LogView, TaskSummaryView, TaskView

TASK, LOG, READY = "task", "log", "ready"
BATCH = 500  # rows read at once; a stream with more to send reads again at once
SNAPSHOT_LINES = 2000  # log lines a first connection gets (the UI keeps as many)
STARTUP_WINDOW = 1000  # ids below the newest a fresh horizon checks for gaps


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``id`` None for the lines of a snapshot, which only its last event numbers."""

    kind: str
    data: dict[str, Any]
    id: int | None = None


@dataclass
class Horizon:
    """The newest event id a stream may send: every id up to it is committed or given up for lost.

    One per API process, shared by its streams (hence the lock), refreshed at most every ``min_interval_s``."""

    grace_s: float
    min_interval_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _settled: int | None = None
    _gap: tuple[int, float] | None = None  # the first missing id, and when it was first missed
    _checked: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, session: Session) -> int:
        with self._lock:
            now = self.clock()
            if self._settled is not None and self._checked is not None and now - self._checked < self.min_interval_s:
                return self._settled
            self._checked = now
            if self._settled is None:
                newest = session.scalar(select(func.max(TaskEvent.id))) or 0
                self._settled = max(0, newest - STARTUP_WINDOW)
            ids = session.scalars(select(TaskEvent.id).where(TaskEvent.id > self._settled)
                                  .order_by(TaskEvent.id).limit(10 * BATCH))
            for found in ids:
                missing = self._settled + 1
                if found != missing:
                    if self._gap is None or self._gap[0] != missing:
                        self._gap = (missing, now)
                    if now - self._gap[1] < self.grace_s:
                        break
                self._settled = found
            return self._settled


def newest_id(session: Session) -> int:
    return session.scalar(select(func.max(TaskEvent.id))) or 0


def task_snapshot(session: Session, task_id: int, upto: int) -> list[Event]:
    """What a first connection to a task's stream gets: its log (the last ``SNAPSHOT_LINES`` lines written up
    to event ``upto``), then the task itself, numbered ``upto`` so that the stream goes on from there."""
    task = session.get_one(Task, task_id)
    lines = list(session.scalars(
        select(TaskLog).outerjoin(TaskEvent, TaskEvent.log_id == TaskLog.id)
        # a line without an event is older than the retention of events: it belongs to the snapshot
        .where(TaskLog.task_id == task_id, or_(TaskEvent.id.is_(None), TaskEvent.id <= upto))
        .order_by(TaskLog.id.desc()).limit(SNAPSHOT_LINES)))
    return [*(Event(LOG, LogView.of(line).to_json()) for line in reversed(lines)),
            Event(TASK, TaskView.of(task).to_json(), upto)]


def task_events(session: Session, task_id: int, after: int, upto: int) -> tuple[list[Event], int]:
    """The events of one task after ``after`` up to ``upto``, and the id to go on from. Changes of the task
    in one read become one event (the task as it is now, numbered by the last of them)."""
    rows = session.execute(
        select(TaskEvent.id, TaskEvent.kind, TaskLog)
        .outerjoin(TaskLog, TaskLog.id == TaskEvent.log_id)
        .where(TaskEvent.task_id == task_id, TaskEvent.id > after, TaskEvent.id <= upto)
        .order_by(TaskEvent.id).limit(BATCH)).all()
    cursor = rows[-1][0] if len(rows) == BATCH else upto
    last_change = max((event_id for event_id, kind, _ in rows if kind == TASK), default=None)
    events: list[Event] = []
    for event_id, kind, line in rows:
        if kind == LOG and line is not None:
            events.append(Event(LOG, LogView.of(line).to_json(), event_id))
        elif kind == TASK and event_id == last_change:
            task = session.get(Task, task_id)
            if task is not None:
                events.append(Event(TASK, TaskView.of(task).to_json(), event_id))
    return events, cursor


def dashboard_events(session: Session, after: int, upto: int) -> tuple[list[Event], int]:
    """The task changes after ``after`` up to ``upto`` (no log lines), one event per task changed: its summary,
    numbered by its last change in this read."""
    rows = session.execute(
        select(TaskEvent.id, TaskEvent.task_id)
        .where(TaskEvent.kind == TASK, TaskEvent.id > after, TaskEvent.id <= upto)
        .order_by(TaskEvent.id).limit(BATCH)).all()
    cursor = rows[-1][0] if len(rows) == BATCH else upto
    last = {task_id: event_id for event_id, task_id in rows}
    found = {task.id: task for task in session.scalars(select(Task).where(Task.id.in_(last)))}
    return [Event(TASK, TaskSummaryView.of(found[task_id]).to_json(), event_id)
            for task_id, event_id in sorted(last.items(), key=lambda item: item[1]) if task_id in found], cursor


def prune(session: Session, retention_days: int) -> int:
    """Delete the events older than ``retention_days``; how many went."""
    cutoff = utcnow() - timedelta(days=retention_days)
    result = cast(CursorResult[Any], session.execute(delete(TaskEvent).where(TaskEvent.at < cutoff)))
    return result.rowcount or 0
