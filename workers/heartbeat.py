"""A running step's lease, renewed while its action runs, so that a long step of a live worker is never
taken over; a worker that dies stops renewing, and its step is taken over once the lease runs out."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from octoprov import pipeline
from octoprov.db import Database
from octoprov.errors import is_infrastructure

log = logging.getLogger(__name__)


def beat_interval_s(lease_s: int) -> float:
    """Four renewals per lease: a live owner's lease always has more than half of it left."""
    return max(0.5, lease_s / 4)


class LeaseHeartbeat:
    """A thread that renews one claim's lease every quarter lease until the action ends."""

    def __init__(self, database: Database, task_id: int, name: str, attempt: int, lease_s: int):
        self.database, self.task_id, self.name, self.attempt, self.lease_s = database, task_id, name, attempt, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{task_id}-{name}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(beat_interval_s(self.lease_s)):
            try:
                with self.database.session() as session:
                    if not pipeline.renew_lease(session, self.task_id, self.name, self.attempt, self.lease_s):
                        return  # cancelled, or taken over: nothing of ours to keep alive
            except Exception as exc:  # the database is away: try again at the next beat, the lease may still hold
                if not is_infrastructure(exc):
                    log.exception("task %s: could not renew the lease of %s", self.task_id, self.name)
                    return
                log.warning("task %s: could not renew the lease of %s: %s", self.task_id, self.name, exc)
