"""A running step's lease, renewed while its action runs, so that a long step of a live worker is never
taken over; a worker that dies stops renewing, and its step is taken over once the lease runs out.

One renewer thread per worker process serves every lease the process holds: a step's action that takes
milliseconds must not pay for starting and joining a thread of its own.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from octoprov import pipeline
from octoprov.db import Database
from octoprov.errors import is_infrastructure

log = logging.getLogger(__name__)


def beat_interval_s(lease_s: int) -> float:
    """Four renewals per lease: a live owner's lease always has more than half of it left."""
    return max(0.5, lease_s / 4)


@dataclass
class _Lease:
    database: Database
    task_id: int
    name: str
    attempt: int
    lease_s: int
    due: float  # monotonic time of the next renewal


class _Renewer:
    """The process's renewer: a thread that renews each held lease when it falls due, started on first
    use in each process (a thread does not survive the fork of a worker's child)."""

    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._wake = threading.Condition()
        self._ids = itertools.count()
        self._pid: int | None = None
        self._wakes_at = 0.0  # monotonic time the thread wakes at next, on its own

    def hold(self, lease: _Lease) -> int:
        with self._wake:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._leases.clear()
                self._wakes_at = 0.0
                threading.Thread(target=self._run, name="lease-renewer", daemon=True).start()
            key = next(self._ids)
            self._leases[key] = lease
            if lease.due < self._wakes_at:  # else the thread wakes in time anyway: a step of milliseconds wakes nobody
                self._wake.notify()
            return key

    def release(self, key: int) -> None:
        with self._wake:
            self._leases.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [(key, lease) for key, lease in self._leases.items() if lease.due <= now]
                if not due:
                    self._wakes_at = min((lease.due for lease in self._leases.values()), default=now + 60)
                    self._wake.wait(self._wakes_at - now)
                    self._wakes_at = 0.0  # awake: whatever is held now is looked at before it sleeps again
                    continue
                for _, lease in due:
                    lease.due = now + beat_interval_s(lease.lease_s)
            for key, lease in due:
                if not _renew(lease):
                    self.release(key)


def _renew(lease: _Lease) -> bool:
    """One renewal; False when there is nothing of ours left to keep alive."""
    try:
        with lease.database.session() as session:
            return pipeline.renew_lease(session, lease.task_id, lease.name, lease.attempt, lease.lease_s)
    except Exception as exc:  # the database is away: try again at the next beat, the lease may still hold
        if not is_infrastructure(exc):
            log.exception("task %s: could not renew the lease of %s", lease.task_id, lease.name)
            return False
        log.warning("task %s: could not renew the lease of %s: %s", lease.task_id, lease.name, exc)
        return True


_RENEWER = _Renewer()


class LeaseHeartbeat:
    """Renews one claim's lease every quarter lease until the action ends."""

    def __init__(self, database: Database, task_id: int, name: str, attempt: int, lease_s: int):
        self._lease = _Lease(database, task_id, name, attempt, lease_s, 0.0)
        self._key: int | None = None

    def __enter__(self) -> LeaseHeartbeat:
        self._lease.due = time.monotonic() + beat_interval_s(self._lease.lease_s)
        self._key = _RENEWER.hold(self._lease)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._key is not None:
            _RENEWER.release(self._key)
