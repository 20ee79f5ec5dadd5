"""Sending pipeline work to the worker pools: one queue per target type's pool, and per site.

Only names are sent (``octoprov.step`` with a task id and a step name), so the API can
enqueue without importing the worker code. A task of a site runs on its site's queues
(``kvm@branch1``); the dispatcher looks the task's site up itself, so no caller has to carry it (a submission
tells it a new task's site, which saves the read).
"""

from __future__ import annotations

import logging
import time

from celery import Celery

from octoprov.db import Database
from octoprov.settings import Settings
from octoprov.sites import SiteLookup
from octoprov.targets import registry

log = logging.getLogger(__name__)


def queue_for(target_type: str, site: str | None = None) -> str:
    """The queue of a task's target type at its site, as the target registry declares it."""
    return registry.queue_for(target_type, site)


PUBLISH_ATTEMPTS, PUBLISH_RETRY_S = 2, 0.2


class Dispatcher:
    def __init__(self, app: Celery, sites: SiteLookup | None = None):
        """``sites``: where tasks and machines are (None: everything is central, as in a single-site install)."""
        self.app = app
        self.sites = sites

    @classmethod
    def from_settings(cls, settings: Settings, database: Database | None = None) -> Dispatcher:
        """``database``: the process's own, to read the sites of tasks from (default: one of its own)."""
        from workers.app import make_celery

        return cls(make_celery(settings), SiteLookup(database or Database.from_settings(settings)))

    def _queue(self, target_type: str, task_id: int) -> str:
        return queue_for(target_type, self.sites.of_task(task_id) if self.sites else None)

    def remember_site(self, task_id: int, site: str | None) -> None:
        """A new task's site, from its submission: its first steps are queued without reading it back."""
        if self.sites:
            self.sites.remember(task_id, site)

    def run_steps(self, task_id: int, target_type: str, names: list[str]) -> bool:
        """Enqueue consecutive work steps as one message on the target's pool (the worker runs them in
        order). False when the broker cannot be reached: the periodic job queues the steps once it can
        (they stay pending)."""
        if not names:
            return True
        kwargs = {"then": names[1:]} if len(names) > 1 else {}
        work = self.app.signature("octoprov.step", args=(task_id, names[0]), kwargs=kwargs,
                                  queue=self._queue(target_type, task_id))
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                with self.app.producer_or_acquire() as producer:
                    # fail in seconds, not after the client's long default retries, when the broker is down
                    producer.connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
                    work.apply_async(producer=producer, retry=False, ignore_result=True)
                return True
            except Exception as exc:  # any broker failure: the task stays stored and pending, and is queued later
                # one more try for a moment's conflict, e.g. the embedded broker's queue row declared by a worker
                # at the same instant ("UNIQUE constraint failed: kombu_queue.name"), which nothing else re-drives
                if attempt + 1 < PUBLISH_ATTEMPTS:
                    time.sleep(PUBLISH_RETRY_S)
                    continue
                log.warning("task %s: could not queue %s: %s", task_id, names[0], exc)
        return False

    def rollback(self, task_id: int, target_type: str) -> None:
        self.app.send_task("octoprov.rollback", args=(task_id,), queue=self._queue(target_type, task_id),
                           ignore_result=True)

    def after_failure(self, task_id: int, target_type: str, keep_machine: bool) -> None:
        """A failed task is rolled back (which then notifies) unless it asked to keep its machine."""
        if keep_machine:
            self.notify(task_id)
        else:
            self.rollback(task_id, target_type)

    def inspect_machine(self, machine_id: int) -> None:
        """A machine's inventory read from its BMC by the pool that reaches BMCs."""
        site = self.sites.of_machine(machine_id) if self.sites else None
        self.app.send_task("octoprov.inspect_machine", args=(machine_id,), queue=queue_for("baremetal", site),
                           ignore_result=True)

    def notify(self, task_id: int) -> None:
        self.app.send_task("octoprov.notify_task", args=(task_id,), queue="default", ignore_result=True)
