"""Sending pipeline work to the worker pools: one queue per target type's pool.

Only names are sent (``octoprov.step`` with a task id and a step name), so the API can
enqueue without importing the worker code.
"""

from __future__ import annotations

import logging
import time

from celery import Celery

from octoprov.settings import Settings
from octoprov.targets import registry

log = logging.getLogger(__name__)


def queue_for(target_type: str) -> str:
    """The pool of a task's target type, as the target registry declares it."""
    return registry.queue_for(target_type)


PUBLISH_ATTEMPTS, PUBLISH_RETRY_S = 2, 0.2


class Dispatcher:
    def __init__(self, app: Celery):
        self.app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> Dispatcher:
        from workers.app import make_celery

        return cls(make_celery(settings))

    def run_steps(self, task_id: int, target_type: str, names: list[str]) -> bool:
        """Enqueue consecutive work steps as one message on the target's pool (the worker runs them in
        order). False when the broker cannot be reached: the periodic job queues the steps once it can
        (they stay pending)."""
        if not names:
            return True
        kwargs = {"then": names[1:]} if len(names) > 1 else {}
        work = self.app.signature("octoprov.step", args=(task_id, names[0]), kwargs=kwargs,
                                  queue=queue_for(target_type))
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
        self.app.send_task("octoprov.rollback", args=(task_id,), queue=queue_for(target_type), ignore_result=True)

    def after_failure(self, task_id: int, target_type: str, keep_machine: bool) -> None:
        """A failed task is rolled back (which then notifies) unless it asked to keep its machine."""
        if keep_machine:
            self.notify(task_id)
        else:
            self.rollback(task_id, target_type)

    def inspect_machine(self, machine_id: int) -> None:
        """A machine's inventory read from its BMC by the pool that reaches BMCs."""
        self.app.send_task("octoprov.inspect_machine", args=(machine_id,), queue=queue_for("baremetal"),
                           ignore_result=True)

    def notify(self, task_id: int) -> None:
        self.app.send_task("octoprov.notify_task", args=(task_id,), queue="default", ignore_result=True)
