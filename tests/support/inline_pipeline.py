"""Steps run in this process instead of by a worker: the broker's stand-in of the Hyper-V pipeline tests.

The fake hosts of fake_pypsrp.py live in this process (their state is Python objects), so the real
Celery task functions are called here, in the order the chains would deliver them."""

from __future__ import annotations

from collections import deque

import pytest
from celery.exceptions import Ignore, Retry

from api.runtime import DISPATCH
from tests.support.fake_pypsrp import make_lab


class InlineQueue:
    """Stands in for the broker: records what the API and the steps enqueue, and delivers it to the
    real Celery task functions one message at a time."""

    def __init__(self):
        self.messages: deque = deque()
        self.delivered: list[tuple] = []

    # the Dispatcher interface (workers/dispatch.py)
    def run_steps(self, task_id: int, target_type: str, names: list[str]) -> bool:
        if names:
            self.messages.append(("chain", task_id, list(names)))
        return True

    def rollback(self, task_id: int, target_type: str) -> None:
        self.messages.append(("rollback", task_id))

    def after_failure(self, task_id: int, target_type: str, keep_machine: bool) -> None:
        self.notify(task_id) if keep_machine else self.rollback(task_id, target_type)

    def notify(self, task_id: int) -> None:
        self.delivered.append(("notify", task_id))

    def inspect_machine(self, machine_id: int) -> None:
        self.messages.append(("inspect", machine_id))

    def deliver(self, stop_after: str | None = None) -> None:
        """Run queued messages; a chain goes on while its steps succeed, as Celery's does.
        ``stop_after``: leave the rest of the queue once that step ran (to act in between)."""
        from workers.step_tasks import inspect_machine, rollback, run_step

        while self.messages:
            kind, task_id, *rest = self.messages.popleft()
            if kind == "rollback":
                self.delivered.append(("rollback", task_id, rollback(task_id)))
                continue
            if kind == "inspect":  # task_id is the machine's id here
                self.delivered.append(("inspect", task_id, inspect_machine(task_id)))
                continue
            names = rest[0]
            while names:
                name = names[0]
                try:
                    run_step(task_id, name)
                except Retry:  # a transient error: the step was released; deliver it again
                    continue
                except Ignore:  # the step failed, or the task ended: the chain stops here
                    self.delivered.append(("stopped", task_id, name))
                    break
                self.delivered.append(("step", task_id, name))
                names = names[1:]
                if name == stop_after:
                    if names:
                        self.messages.appendleft(("chain", task_id, names))
                    return


@pytest.fixture
def queue(app, runtime, monkeypatch):
    inline = InlineQueue()
    app.extensions[DISPATCH] = inline
    import workers.step_tasks

    monkeypatch.setattr(workers.step_tasks, "worker_runtime", lambda: runtime)
    monkeypatch.setattr(workers.step_tasks, "worker_dispatcher", lambda: inline)
    return inline


@pytest.fixture
def lab(client, runtime, monkeypatch, queue):
    return make_lab(client, runtime, monkeypatch)
