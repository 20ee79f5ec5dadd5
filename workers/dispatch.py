"""Sending pipeline work to the worker pools: one queue per target type's pool.

Only names are sent (``octoprov.step`` with a task id and a step name), so the API can
enqueue without importing the worker code.
"""

from __future__ import annotations

from celery import Celery, chain

from octoprov.settings import Settings

QUEUE_FOR = {"hyperv": "hyperv", "kvm": "kvm", "baremetal": "baremetal", "fake": "default"}


def queue_for(target_type: str) -> str:
    return QUEUE_FOR.get(target_type, "default")


class Dispatcher:
    def __init__(self, app: Celery):
        self.app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> Dispatcher:
        from workers.app import make_celery

        return cls(make_celery(settings))

    def run_steps(self, task_id: int, target_type: str, names: list[str]) -> None:
        """Enqueue consecutive work steps as one Celery chain on the target's pool."""
        if not names:
            return
        queue = queue_for(target_type)
        links = [self.app.signature("octoprov.step", args=(task_id, name), immutable=True, queue=queue)
                 for name in names]
        (links[0] if len(links) == 1 else chain(*links, app=self.app)).apply_async()

    def rollback(self, task_id: int, target_type: str) -> None:
        self.app.send_task("octoprov.rollback", args=(task_id,), queue=queue_for(target_type))

    def after_failure(self, task_id: int, target_type: str, keep_machine: bool) -> None:
        """A failed task is rolled back (which then notifies) unless it asked to keep its machine."""
        if keep_machine:
            self.notify(task_id)
        else:
            self.rollback(task_id, target_type)

    def notify(self, task_id: int) -> None:
        self.app.send_task("octoprov.notify_task", args=(task_id,), queue="default")
