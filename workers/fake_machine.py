"""The fake target's simulated machine: after power-on it reports each stage to the status
callback over HTTP, with the task's token, exactly as an installer would.

Each report is its own short timed task (a countdown, not a sleep), so a machine that takes
its time holds no worker slot.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from octoprov import steps
from octoprov.context import TaskContext
from octoprov.models import Task, TaskStep
from octoprov.targets.fake import options_of, record, use_machine_scheduler
from workers.app import app
from workers.runtime import worker_runtime

if TYPE_CHECKING:
    from celery import Task as CeleryTask


def boot(ctx: TaskContext) -> None:
    options = options_of(ctx)
    app.send_task("octoprov.fake_machine_report", args=(ctx.task_id, 0), queue=options.machine_pool,
                  countdown=options.callback_delay_s)


use_machine_scheduler(boot)


@app.task(name="octoprov.fake_machine_report", bind=True)  # type: ignore[untyped-decorator]  # celery: untyped
def report(self: CeleryTask, task_id: int, index: int) -> str:
    from octoprov.context import load_context

    runtime = worker_runtime()
    with runtime.database.session() as session:
        if session.get(Task, task_id) is None:
            return "task gone"
        waits = list(session.scalars(
            select(TaskStep).where(TaskStep.task_id == task_id, TaskStep.kind == steps.WAIT)
            .order_by(TaskStep.position)))
        ctx = load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)
    if index >= len(waits):
        return "all reported"
    step = waits[index]
    options = options_of(ctx)
    status = "failed" if options.fail_at == step.name else "ok"
    body = {"taskId": task_id, "token": ctx.callback_token(), "event": step.event, "status": status,
            "message": f"fake machine: {step.title}" + (" failed" if status == "failed" else " done")}
    answer = _post(ctx.callback_url, body)
    record(ctx, "callback", event=step.event, status=status, answer=answer, worker=self.request.hostname)
    if status == "ok" and answer.get("accepted"):
        app.send_task("octoprov.fake_machine_report", args=(task_id, index + 1), queue=options.machine_pool,
                      countdown=options.callback_delay_s)
    return f"{step.event}: {answer}"


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the API's own callback URL from settings
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own API's URL
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        return {"accepted": False, "status": exc.code}
    except OSError as exc:
        return {"accepted": False, "error": str(exc)}
