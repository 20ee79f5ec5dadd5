"""Pipeline throughput: many fake tasks (nine steps each: four work steps, three reports of the simulated
machine, the agent and finish) through the real stack (gunicorn API, Redis, PostgreSQL, one worker of two
processes), submitted at once; pipelines finished per second, and the CPU each one cost.

Reference, measured in the same run on the same broker and worker: bare Celery chains of nine no-op
tasks (``octoprov.ping``), as many, sent at once. The ratio says how much of Celery's own pace
Octoprov's steps keep (issue 21's goal: at least 0.5).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from celery import chain
from sqlalchemy import func, select

from bench import durable_reference
from bench.common import group_cpu_s, ratio, sized
from octoprov import states
from octoprov.models import Task, TaskLog
from octoprov.settings import Settings
from tests.support.processes import stop_group
from tests.support.servers import start_postgres, start_redis
from tests.support.stack import API, start_stack
from workers.app import make_celery

PIPELINES = sized(1000, 6)
STEPS = 9
SLOTS = 2
SUBMITTERS = 4
# how long a phase may take before the bench gives up and says where it stood (the smoke run's test waits 540 s)
PATIENCE_S = sized(max(600, PIPELINES), 150)


def _octoprov(stack, node: int, image: int, groups: dict[str, int]) -> tuple[float, dict[str, float]]:
    """Pipelines per second and CPU seconds per pipeline of each process group (API, worker, PostgreSQL)."""
    database = stack.database
    sessions = threading.local()  # a client keeps its connection, as any script submitting many tasks does

    def submit(index: int) -> None:
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
            sessions.http.headers.update(stack.api.headers)
        response = sessions.http.post(stack.api.url + API + "/tasks", timeout=60,
                                      json=stack.task_body(node, image, hostname=f"TP-{index:05d}"))
        assert response.status_code == 201, response.text

    def ended() -> int:
        with database.session() as session:
            return session.scalar(select(func.count()).select_from(Task).where(Task.status.in_(
                (states.COMPLETED, states.FAILED, states.CANCELLED)))) or 0

    def await_all(count: int) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while (done := ended()) < count:
            if time.monotonic() > deadline:
                print(_unfinished(database), flush=True)
                raise SystemExit(f"only {done} of {count} pipelines ended in time")
            time.sleep(0.2)

    try:
        for index in range(SLOTS):  # warm-up, as for the reference: each worker process has run a pipeline
            submit(PIPELINES + index)
        await_all(SLOTS)
        cpu_before, began = {name: group_cpu_s([pid]) for name, pid in groups.items()}, time.perf_counter()
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(submit, range(PIPELINES)))
        await_all(SLOTS + PIPELINES)
        with database.session() as session:
            completed = session.scalar(select(func.count()).select_from(Task).where(Task.status == states.COMPLETED))
    finally:
        database.dispose()
    if completed != SLOTS + PIPELINES:
        raise SystemExit(f"{SLOTS + PIPELINES - (completed or 0)} of {SLOTS + PIPELINES} pipelines did not complete")
    elapsed = time.perf_counter() - began
    spent = {name: (group_cpu_s([pid]) - cpu_before[name]) / PIPELINES for name, pid in groups.items()}
    return PIPELINES / elapsed, spent


def _unfinished(database) -> str:
    """Where the pipelines that did not end stand: each one's state and steps, and its last log lines."""
    lines = []
    with database.session() as session:
        for task in session.scalars(select(Task).where(Task.status.not_in(
                (states.COMPLETED, states.FAILED, states.CANCELLED))).order_by(Task.id).limit(5)):
            steps = ", ".join(f"{step.name}={step.status}/{step.attempts}" for step in task.steps)
            logs = session.scalars(select(TaskLog.message).where(TaskLog.task_id == task.id)
                                   .order_by(TaskLog.id.desc()).limit(6))
            lines.append(f"task {task.id} {task.status}: {steps}; last log: {' | '.join(reversed(list(logs)))}")
    return "\n".join(lines)


def _celery_chains(env: dict, groups: list[int]) -> tuple[float, float]:
    """Chains of STEPS no-op tasks per second, and CPU seconds per chain (worker and Redis)."""
    app = make_celery(Settings.from_env(env))
    link = app.signature("octoprov.ping", queue="default", immutable=True)
    chain(*[link.clone() for _ in range(STEPS)]).apply_async().get(timeout=60)  # warm-up
    cpu_before, began = group_cpu_s(groups), time.perf_counter()
    results = [chain(*[link.clone() for _ in range(STEPS)]).apply_async() for _ in range(PIPELINES)]
    for result in results:
        result.get(timeout=PATIENCE_S)
    elapsed = time.perf_counter() - began
    return PIPELINES / elapsed, (group_cpu_s(groups) - cpu_before) / PIPELINES


def _durable_chains(env: dict, groups: list[int]) -> tuple[float, float]:
    """Chains of STEPS tasks that each commit one row to PostgreSQL, per second, and CPU seconds per chain
    (their worker, Redis and PostgreSQL): the floor of a durable pipeline (bench/durable_reference.py)."""
    durable_reference.prepare(env["OCTOPROV_DATABASE_URL"], PIPELINES + 1)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.durable_reference", "worker", "-Q",
                               durable_reference.QUEUE, "-c", str(SLOTS), "-l", "warning"],
                              env=env, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        app = make_celery(Settings.from_env(env))  # the sending side, on the stack's broker

        def chain_of(row: int) -> Any:
            link = app.signature(durable_reference.TASK, args=(row,), queue=durable_reference.QUEUE, immutable=True)
            return chain(*[link.clone() for _ in range(STEPS)])

        chain_of(PIPELINES).apply_async().get(timeout=120)  # warm-up, and the worker is up
        cpu_before, began = group_cpu_s([worker.pid, *groups]), time.perf_counter()
        results = [chain_of(row).apply_async() for row in range(PIPELINES)]
        for result in results:
            result.get(timeout=PATIENCE_S)
        elapsed = time.perf_counter() - began
        return PIPELINES / elapsed, (group_cpu_s([worker.pid, *groups]) - cpu_before) / PIPELINES
    finally:
        stop_group(worker)


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="octoprov-bench-throughput-"))
    postgres, redis = start_postgres(base / "pg"), start_redis(base / "redis")
    stack = start_stack(base / "stack", postgres, redis.url)
    try:
        worker = stack.start_worker(concurrency=SLOTS)
        image = stack.image()
        node = stack.fake_node("THROUGHPUT", delayS=0, callbackDelayS=0)
        assert stack.api.process is not None and postgres.pid is not None and redis.pid is not None
        reference, reference_cpu = _celery_chains(stack.env, [worker.pid, redis.pid])
        durable, durable_cpu = _durable_chains(stack.env, [redis.pid, postgres.pid])
        ours, ours_cpu = _octoprov(stack, node, image,
                                   {"API": stack.api.process.pid, "worker": worker.pid, "PostgreSQL": postgres.pid})
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()
    print(f"Pipeline throughput: {PIPELINES} pipelines of {STEPS} steps, submitted at once; one worker of "
          f"{SLOTS} processes; PostgreSQL and Redis")
    parts = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in ours_cpu.items())
    print(f"  octoprov: {ours:.1f} pipelines/s, {sum(ours_cpu.values()) * 1000:.0f} ms CPU each ({parts})")
    print(f"  reference, Celery chains of {STEPS} no-op tasks: {reference:.1f} chains/s, "
          f"{reference_cpu * 1000:.0f} ms CPU each (worker, Redis)")
    print(f"  second reference, Celery chains of {STEPS} tasks each committing one row: {durable:.1f} chains/s, "
          f"{durable_cpu * 1000:.0f} ms CPU each (worker, Redis, PostgreSQL); octoprov / durable chains = "
          f"{ours / durable:.2f}x")
    ratio("pipeline throughput", ours, reference, "pipelines/s", goal=">= 0.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
