"""Chaos runs: the whole stack on a PostgreSQL and a Redis of its own, tasks of the fake target submitted
through the API at a steady rate while a fault strikes, then a settle period and the checks that say no
task was lost (issue 20's acceptance).

The stack is that of tests/support/stack.py: the API (gunicorn), two Celery workers of two slots each and
beat. The faults:

* ``workers``: a random worker's whole process group SIGKILLed at random moments, started again each time;
* ``redis`` / ``redis-aof``: Redis SIGKILLed and started again after 5 s on the same port, without persistence
  or with append-only persistence (as compose.yaml runs it);
* ``postgres``: PostgreSQL stopped (fast shutdown) for 5 s and started again;
* ``api``: the API's gunicorn master SIGKILLed and started again on the same port.

The checks, on the database and the fake target's record of what it did (``octoprov.targets.fake.events``):
every task final and completed (none of these faults is meant to fail a task), no task created two
machines, no side effect of a step happened twice, every failed task rolled back, no HTTP 5xx but 503.

Every process and server started here is stopped by its PID when the run ends, however it ends. Faults
that start servers again run in the calling thread: the servers' parent-death signal belongs to the thread
that started them (tests/support/servers.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from octoprov import states
from octoprov.db import Database
from octoprov.models import Task, TaskStep
from octoprov.targets.fake import events
from tests.support.live import serve_again
from tests.support.processes import process_table
from tests.support.servers import RunningServer, start_postgres, start_redis
from tests.support.stack import API, Stack, start_stack

log = logging.getLogger(__name__)

FINAL = frozenset({states.COMPLETED, states.FAILED, states.CANCELLED})
# what the fake target records that is not a step's side effect: the machine's reports and injected failures
NOT_SIDE_EFFECTS = frozenset({"callback", "fail"})
OUTAGE_S = 5.0  # how long Redis and PostgreSQL stay down
WORKERS, SLOTS = 2, 2
KILL_INTERVAL_S = 1.0  # mean time between two worker kills, at least
API_LEFTOVER_GRACE_S = 1.0  # the old API workers' time to end by themselves before a restart kills them


@dataclass(frozen=True)
class Size:
    """How big a run is and how fast the stack reacts: the test suite's size, or the issue's (``FULL``)."""

    lease_s: int  # step lease and the broker's visibility timeout
    deadline_s: int  # every wait step's deadline
    deadline_check_s: int  # how often the periodic job runs
    requeue_after_s: int  # how long lost work waits before the periodic job queues it again
    settle_s: float  # the longest wait for every task to end once the fault is over
    rate_per_s: float  # tasks submitted per second
    step_delay_s: float  # time each fake work step takes
    callback_delay_s: float  # time between two reports of a fake machine


TEST = Size(lease_s=4, deadline_s=45, deadline_check_s=1, requeue_after_s=5, settle_s=60, rate_per_s=1.5,
            step_delay_s=0.2, callback_delay_s=0.3)
FULL = Size(lease_s=15, deadline_s=90, deadline_check_s=5, requeue_after_s=5, settle_s=150, rate_per_s=1.0,
            step_delay_s=0.2, callback_delay_s=0.3)


@dataclass(frozen=True)
class Scenario:
    """One fault and the number of tasks submitted while it strikes (``kills``: for the ``workers`` fault);
    ``prefix`` starts the tasks' host names (a host name has 15 characters at most)."""

    name: str
    prefix: str
    title: str
    tasks: int
    kills: int = 0


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("workers", "KILL", "a random worker's process group SIGKILLed {kills} times", 25, kills=30),
    Scenario("redis", "REDIS", "Redis killed, restarted after 5 s (no persistence)", 24),
    Scenario("redis-aof", "AOF", "same, Redis with append-only persistence", 24),
    Scenario("postgres", "PG", "PostgreSQL stopped 5 s, started again", 24),
    Scenario("api", "API", "gunicorn master SIGKILLed, restarted", 24),
)}
# the sizes (`python -m bench.chaos --full`)
FULL_SCENARIOS: dict[str, Scenario] = {
    "workers": replace(SCENARIOS["workers"], tasks=100, kills=100),
    "redis": replace(SCENARIOS["redis"], tasks=56),
    "redis-aof": replace(SCENARIOS["redis-aof"], tasks=56),
    "postgres": replace(SCENARIOS["postgres"], tasks=55),
    "api": replace(SCENARIOS["api"], tasks=56),
}


@dataclass
class ChaosResult:
    """What a run found; ``problems`` names each task that broke a check, with its step rows."""

    scenario: str
    title: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    stuck: int = 0
    duplicates: int = 0
    repeats: int = 0
    http500: int = 0
    not_rolled_back: int = 0
    exits: int = 0  # processes of the stack that ended by themselves
    faults: int = 0
    down_s: float = 0.0  # how long the struck server was away, in all
    seconds: float = 0.0
    answers: Counter[int] = field(default_factory=Counter)
    logs: Path | None = None  # the stack's log folder, kept after the run
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every check held: all tasks completed, nothing twice, no 5xx but 503."""
        return (self.submitted > 0 and self.completed == self.submitted and not self.failed and not self.cancelled
                and not self.stuck and not self.duplicates and not self.repeats and not self.http500
                and not self.not_rolled_back and not self.exits)

    def row(self) -> str:
        """This run as a row of the Markdown table of ``HEADER``."""
        figures = (self.submitted, self.completed, self.failed, self.stuck, self.duplicates, self.repeats,
                   self.http500)
        return "| " + " | ".join([self.title, *map(str, figures)]) + " |"

    def report(self) -> str:
        """A few lines for an assertion message or the bench's output: the figures and every problem."""
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(self.answers.items()))
        lines = [f"{self.scenario}: {self.submitted} submitted, {self.completed} completed, {self.failed} failed, "
                 f"{self.cancelled} cancelled, {self.stuck} stuck, {self.duplicates} duplicates, {self.repeats} "
                 f"repeats, {self.http500} HTTP 5xx (not 503), {self.not_rolled_back} not rolled back, "
                 f"{self.exits} processes ended by themselves; "
                 f"{self.faults} faults ({self.down_s:.1f} s down); {self.seconds:.0f} s; answers {{{answers}}}"]
        return "\n".join(lines + [f"  {problem}" for problem in self.problems] + [f"  logs: {self.logs}"])


HEADER = ("| scenario | submitted | completed | failed | stuck for good | duplicates | repeats | HTTP 500 |\n"
          "|---|---|---|---|---|---|---|---|")


# -- the submitter ------------------------------------------------------------------------------------


class Submitter(threading.Thread):
    """POSTs tasks through the API at a steady rate, as a client that honours 503 + Retry-After would:
    each task is sent until it is accepted, always with the same Idempotency-Key, so a request whose answer
    was lost (the connection broke) gets the task it created when sent again. Each round also reads the
    task list and the last task, which must not answer 500 either."""

    GIVE_UP_S = 120.0  # one task's POST retried this long at most

    def __init__(self, stack: Stack, node_id: int, image_id: int, count: int, rate_per_s: float, prefix: str):
        super().__init__(name="chaos-submitter", daemon=True)
        self.stack, self.node_id, self.image_id = stack, node_id, image_id
        self.count, self.interval, self.prefix = count, 1.0 / rate_per_s, prefix
        self.accepted: dict[str, int] = {}  # host name -> task id
        self.answers: Counter[int] = Counter()
        self.server_errors: list[str] = []  # every 5xx but 503: method, path, status, body
        self.not_submitted: list[str] = []
        self.error: BaseException | None = None
        self._quit = threading.Event()
        self._session = requests.Session()

    def hostname(self, index: int) -> str:
        return f"{self.prefix}-{index:04d}"

    def run(self) -> None:
        try:
            began = time.monotonic()
            for index in range(self.count):
                pause = began + index * self.interval - time.monotonic()
                if pause > 0 and self._quit.wait(pause):
                    return
                self._submit(self.hostname(index))
                self._read()
        except BaseException as exc:  # reported by the harness, not lost in a thread
            self.error = exc
        finally:
            self._session.close()

    def stop(self) -> None:
        self._quit.set()

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> requests.Response | None:
        """One request; None when no answer came (the API is down or the connection broke)."""
        try:
            response = self._session.request(method, self.stack.api.url + API + path, timeout=30,
                                             headers={**self.stack.api.headers, **(headers or {})}, **kwargs)
        except requests.RequestException:
            self.answers[0] += 1
            return None
        self.answers[response.status_code] += 1
        if response.status_code >= 500 and response.status_code != 503:
            self.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:300].strip()}")
        return response

    def _submit(self, hostname: str) -> None:
        body = {"hostname": hostname, "targetType": "fake", "hypervisorNodeId": self.node_id,
                "vm": {"cpu": 2, "memoryGb": 4, "disks": [{"sizeGb": 40, "purpose": "os"}]},
                "os": {"imageId": self.image_id, "adminPassword": "Pa55word!"}}
        key = {"Idempotency-Key": f"chaos-{hostname}"}
        give_up = time.monotonic() + self.GIVE_UP_S
        while time.monotonic() < give_up and not self._quit.is_set():
            response = self._request("POST", "/tasks", json=body, headers=key)
            if response is not None and response.status_code == 201:
                self.accepted[hostname] = response.json()["id"]
                return
            if response is None:
                wait = 0.5
            elif response.status_code == 503:
                wait = float(response.headers.get("Retry-After") or 1)
            elif response.status_code >= 500:
                wait = 1.0
            else:
                self.not_submitted.append(f"{hostname}: {response.status_code} {response.text[:300].strip()}")
                return
            self._quit.wait(wait)
        self.not_submitted.append(f"{hostname}: not accepted within {self.GIVE_UP_S:.0f} s")

    def _read(self) -> None:
        """The reads a UI or a client polls with; only their status codes matter."""
        self._request("GET", "/tasks", params={"perPage": 5})
        if self.accepted:
            self._request("GET", f"/tasks/{next(reversed(self.accepted.values()))}")


# -- the faults ---------------------------------------------------------------------------------------


@dataclass
class Chaos:
    """The running stack and its servers, and the faults that strike them."""

    size: Size
    stack: Stack
    postgres: RunningServer
    redis: RunningServer
    pool: list[subprocess.Popen[bytes]]
    rng: random.Random
    faults: int = 0
    down_s: float = 0.0

    def kill_workers(self, kills: int, window_s: float) -> None:
        """``kills`` SIGKILLs of a random worker's process group over about ``window_s`` seconds, each worker
        started again at once (it needs a moment to take messages again: a kill may find it still starting)."""
        mean = window_s / kills
        for _ in range(kills):
            time.sleep(self.rng.uniform(0.5 * mean, 1.5 * mean))
            index = self.rng.randrange(len(self.pool))
            self.stack.kill(self.pool[index], signal.SIGKILL)
            self.pool[index] = self.stack.start_worker(concurrency=SLOTS)
            self.faults += 1

    def restart_redis(self) -> None:
        """Redis dies (SIGKILL) and a new one starts on the same port after the outage."""
        with self._outage():
            self.redis.restart(OUTAGE_S, signal.SIGKILL)

    def restart_postgres(self) -> None:
        """PostgreSQL stops (fast shutdown: open sessions end) and starts again after the outage."""
        with self._outage():
            self.postgres.restart(OUTAGE_S)

    def restart_api(self) -> None:
        """The gunicorn master dies (SIGKILL) and the API starts again on the same port, as a service manager
        restarts it: what is left of the old service (its workers, which notice their parent is gone but may
        wait long for open connections) is killed after a moment, as a restart ends the whole service."""
        process = self.stack.api.process
        assert process is not None
        with self._outage():
            process.kill()
            process.wait()
            if not _wait_group_gone(process.pid, API_LEFTOVER_GRACE_S):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                _wait_group_gone(process.pid, 5)
            serve_again(self.stack.api)

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        """Count a fault and how long the server it struck was away (until its new process answered)."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.faults += 1
            self.down_s += time.monotonic() - began


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    return [pid for pid, fields in process_table() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- the run ------------------------------------------------------------------------------------------


def settings_for(size: Size) -> dict[str, str]:
    """The stack's settings (environment names without OCTOPROV_) for a run of this size."""
    deadlines = {f"deadline_{step}_s": size.deadline_s
                 for step in ("installer_started", "os_install", "first_boot", "domain_join")}
    values = {"step_lease_s": size.lease_s, "broker_visibility_timeout_s": size.lease_s,
              "deadline_check_s": size.deadline_check_s, "requeue_after_s": size.requeue_after_s, **deadlines}
    return {name: str(value) for name, value in values.items()}


def run(scenario: Scenario, size: Size = TEST, base_dir: Path | None = None, seed: int | None = None) -> ChaosResult:
    """Start a stack on servers of its own, strike it with the scenario's fault while tasks are submitted,
    let it settle and check it; everything started is stopped again, whatever happens."""
    base = Path(tempfile.mkdtemp(prefix=f"octoprov-chaos-{scenario.name}-")) if base_dir is None else base_dir
    rng = random.Random(seed)
    result = ChaosResult(scenario.name, scenario.title.format(kills=scenario.kills))
    began = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        postgres = start_postgres(base / "postgres")
        cleanup.callback(postgres.stop)
        redis = start_redis(base / "redis", appendonly=scenario.name == "redis-aof")
        cleanup.callback(redis.stop)
        stack = start_stack(base / "stack", postgres, redis.url, **settings_for(size))
        cleanup.callback(stack.stop)
        pool = [stack.start_worker(concurrency=SLOTS) for _ in range(WORKERS)]
        beat = stack.start_beat()
        node = stack.fake_node("CHAOS", delayS=size.step_delay_s, callbackDelayS=size.callback_delay_s)
        image = stack.image()
        chaos = Chaos(size, stack, postgres, redis, pool, rng)
        submitter = Submitter(stack, node, image, scenario.tasks, size.rate_per_s, scenario.prefix)
        cleanup.callback(submitter.join)
        cleanup.callback(submitter.stop)
        window = scenario.tasks / size.rate_per_s
        submitter.start()
        _strike(chaos, scenario, window)
        submitter.join()
        if submitter.error is not None:
            raise submitter.error
        _settle(stack, size.settle_s)
        _check(result, stack, submitter)
        exits = _exited(chaos, beat)
        result.exits, result.problems = len(exits), result.problems + exits
        result.logs = stack.data_dir / "log"
        result.faults, result.down_s = chaos.faults, chaos.down_s
    result.seconds = time.monotonic() - began
    return result


def _strike(chaos: Chaos, scenario: Scenario, window_s: float) -> None:
    """The scenario's fault, while the submitter is busy: the outages a third of the way into it."""
    outages: dict[str, Callable[[], None]] = {
        "redis": chaos.restart_redis, "redis-aof": chaos.restart_redis,
        "postgres": chaos.restart_postgres, "api": chaos.restart_api,
    }
    if scenario.name == "workers":  # a kill a second or so: a worker lives long enough to take work
        chaos.kill_workers(scenario.kills, max(window_s, scenario.kills * KILL_INTERVAL_S))
    elif scenario.name in outages:
        time.sleep(window_s / 3)
        outages[scenario.name]()
    else:
        raise ValueError(f"unknown scenario {scenario.name!r}")


def _exited(chaos: Chaos, beat: subprocess.Popen[bytes]) -> list[str]:
    """The stack's processes that ended on their own (a worker the harness killed was replaced): nothing
    restarts them here, so a fault that ends a process leaves its work to the others, or to nobody."""
    processes: list[tuple[str, subprocess.Popen[bytes] | None]] = [
        (f"worker {index}", process) for index, process in enumerate(chaos.pool)]
    processes += [("beat", beat), ("API", chaos.stack.api.process)]
    return [f"{what} (pid {process.pid}) exited on its own with status {process.returncode}"
            for what, process in processes if process is not None and process.poll() is not None]


def _settle(stack: Stack, settle_s: float) -> None:
    """Wait until every task is final and every failed one rolled back, ``settle_s`` at most."""
    database = Database(stack.env["OCTOPROV_DATABASE_URL"])
    deadline = time.monotonic() + settle_s
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception), database.session() as session:
                rows = session.execute(select(Task.status, Task.rollback_due_at)).all()
                if rows and all(status in FINAL and due is None for status, due in rows):
                    return
            time.sleep(1)
    finally:
        database.dispose()


def _check(result: ChaosResult, stack: Stack, submitter: Submitter) -> None:
    """Fill ``result`` from the database and from what the fake target did."""
    result.answers = submitter.answers
    result.http500 = len(submitter.server_errors)
    result.problems += [f"HTTP {line}" for line in submitter.server_errors[:10]]
    result.problems += [f"not submitted: {line}" for line in submitter.not_submitted]
    done: dict[int, Counter[str]] = defaultdict(Counter)
    reports: dict[int, list[str]] = defaultdict(list)  # what each fake machine reported and was answered
    for event in events(stack.data_dir):
        done[event["task"]][event["action"]] += 1
        if event["action"] == "callback":
            reports[event["task"]].append(f"{event.get('event')} {event.get('status')} -> {event.get('answer')}")
    machines = stack.data_dir / "fake" / "machines"
    database = Database(stack.env["OCTOPROV_DATABASE_URL"])
    try:
        with database.session() as session:
            tasks = list(session.scalars(select(Task).order_by(Task.id)))
            rows: dict[int, list[TaskStep]] = defaultdict(list)
            for step in session.scalars(select(TaskStep).order_by(TaskStep.task_id, TaskStep.position)):
                rows[step.task_id].append(step)
    finally:
        database.dispose()
    result.submitted = len(tasks)
    per_host = Counter(task.hostname for task in tasks)
    for hostname, n in per_host.items():
        if n > 1:
            result.duplicates += n - 1
            result.problems.append(f"host {hostname}: {n} tasks")
    for task in tasks:
        _check_task(result, task, rows[task.id], done[task.id], reports[task.id], machines)


def _check_task(result: ChaosResult, task: Task, steps: list[TaskStep], done: Counter[str], reports: list[str],
                machines: Path) -> None:
    def problem(what: str) -> None:
        result.problems.append(f"task {task.id} {task.hostname} {task.status} ({what}): {_steps_text(steps)}; "
                               f"machine's reports: {'; '.join(reports) or 'none'}")

    if task.status == states.COMPLETED:
        result.completed += 1
    elif task.status == states.FAILED:
        result.failed += 1
        problem(f"failed: {task.error_message}")
    elif task.status == states.CANCELLED:
        result.cancelled += 1
        problem("cancelled")
    else:
        result.stuck += 1
        problem("not final")
    if task.status in (states.FAILED, states.CANCELLED):
        machine_left = (machines / f"task-{task.id}.json").exists()
        if task.rollback_due_at is not None or machine_left or not done["cleanup_boot"]:
            result.not_rolled_back += 1
            problem(f"not rolled back: rollback due {task.rollback_due_at}, machine left {machine_left}, "
                    f"boot config cleaned {done['cleanup_boot']} times")
    if done["create"] > 1:
        result.duplicates += 1
        problem(f"machine created {done['create']} times")
    repeated = {action: n for action, n in done.items()
                if n > 1 and action != "create" and action not in NOT_SIDE_EFFECTS}
    if repeated:
        result.repeats += 1
        problem(f"side effects repeated: {repeated}")


def _steps_text(steps: list[TaskStep]) -> str:
    """The step rows in short: name=status/attempts, with the lease, deadline and last queuing when set."""
    parts = []
    for step in steps:
        extra = [f"{label} {moment:%H:%M:%S}" for label, moment in
                 (("lease", step.lease_until), ("deadline", step.deadline_at), ("queued", step.queued_at)) if moment]
        parts.append(f"{step.name}={step.status}/{step.attempts}" + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts)
