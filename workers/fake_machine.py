"""The fake target's simulated machine: after power-on it reports each stage to the status
callback over HTTP, with the task's token, exactly as an installer would.

It behaves like a real machine, so that what a test or a chaos run measures is Octoprov, not the fake:

* its progress lives with the machine (a record file in the fake's data folder), not in the broker: a
  report message lost to a killed worker or a restarted Redis is sent again by the machine's clock
  (a periodic task), as a real machine goes on installing whatever happens to Octoprov's queue;
* it retries a callback that could not be delivered (connection refused, a 5xx such as the API's 503
  during an outage, a report that came before Octoprov was ready for it), bounded and with backoff, as
  Octoprov's own answer files do (startnet 10 tries, Kickstart ``curl --retry 10``, first boot 30 tries);
* a stage Octoprov already recorded ("duplicate": the answer to an earlier try was lost) counts as
  delivered.

A machine plays in a worker of its pool (the node's ``machinePool``). When the worker process that
powered it on consumes that pool's queue, the machine runs beside it on one thread of that process (the
machine room): it holds no worker slot and costs no broker message, as a real machine costs Octoprov
neither. Otherwise (a rehearsal spreading one task over two pools) each report is a timed task on the pool's
queue (a countdown, not a sleep); a machine with no time between its stages reports the next one in the same
run.
What a machine knows it learns at power-on, as a real one does from its answer files: its token (kept
encrypted in its record), the stages it reports and how its node tells it to behave. So a report reads
nothing of Octoprov's database, which the machine, being outside Octoprov, could not either.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import task_postrun
from sqlalchemy import Integer, bindparam, select

from octoprov import steps
from octoprov.context import TaskContext, callback_url
from octoprov.errors import is_infrastructure
from octoprov.models import TaskStep
from octoprov.sites import task_site_name, task_site_select
from octoprov.targets import registry
from octoprov.targets.fake import made_once, options_of, read_file, record_in, use_machine_scheduler, write_record
from workers.app import app
from workers.runtime import worker_runtime

if TYPE_CHECKING:
    from celery import Task as CeleryTask

log = logging.getLogger(__name__)

CALLBACK_TRIES = 14  # about a minute of retries: longer than an API restart or a short database outage
FIRST_RETRY_S = 0.5
LONGEST_RETRY_S = 5.0
CLOCK_GRACE_S = 5.0  # a report this late past its time was lost with its message: send it again
REPORT_TIMEOUT_S = 30


@dataclass
class Progress:
    """Where a powered-on machine is: the index of the next stage to report, how often that report
    has been tried, and when it is due; and what it learnt at power-on: the stages (step name, title,
    event), its token encrypted, the step its node makes it fail at and the time between two stages."""

    task_id: int
    index: int
    tries: int
    due: float
    pool: str
    stages: list[tuple[str, str, str]]
    token_encrypted: str
    fail_at: str | None
    delay_s: float


def progress_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "fake" / "progress"


@contextlib.contextmanager
def machine(data_dir: Path, task_id: int) -> Iterator[tuple[Path, Progress | None]]:
    """The machine's progress record, locked for the caller: two deliveries of one report never post
    at once, and the clock never resends a report being sent."""
    folder = made_once(progress_dir(data_dir))
    path = folder / f"task-{task_id}.json"
    lock = os.open(folder / f"task-{task_id}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the descriptor closes
        yield path, _read(path)
    finally:
        os.close(lock)


def _read(path: Path) -> Progress | None:
    """The record, or None when there is none (or one this version cannot read: that machine stays silent)."""
    stored = read_file(path)
    if stored is None:
        return None
    try:
        progress = Progress(**json.loads(stored))
    except (TypeError, ValueError):
        return None
    progress.stages = [(name, title, event) for name, title, event in progress.stages]  # JSON keeps them as lists
    return progress


def save(path: Path, progress: Progress) -> None:
    write_record(path, asdict(progress))


def finish(path: Path) -> None:
    """The machine is done reporting. Its lock file stays: removing it would let a waiting delivery
    and a new power-on lock two different files."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def schedule(progress: Progress, worker: str | None = None) -> None:
    """Hand the report to this process's machine room when this process is a worker (``worker``, else the one
    running the current task) that consumes the machine's pool; else send its message (while the broker cannot
    be reached the clock sends it later)."""
    worker = worker or _worker_name()
    if worker is not None and progress.pool in app.amqp.queues.consume_from:
        _room.add(progress, worker)
        return
    try:
        app.send_task("octoprov.fake_machine_report", args=(progress.task_id, progress.index), queue=progress.pool,
                      countdown=max(0.0, progress.due - time.time()), ignore_result=True)
    except Exception as exc:
        if not is_infrastructure(exc):
            raise
        log.warning("fake machine of task %s: report %s left to the clock: %s", progress.task_id, progress.index, exc)


_TASK_ID = bindparam("task_id", type_=Integer)
# what the machine learns at power-on, in one read built once: the stages it reports, and its task's site
_STAGES = (select(TaskStep.name, TaskStep.title, TaskStep.event,
                  task_site_select(_TASK_ID).scalar_subquery().label("site"))
           .where(TaskStep.task_id == _TASK_ID, TaskStep.kind == steps.WAIT).order_by(TaskStep.position))


def boot(ctx: TaskContext) -> None:
    """Power-on: the machine starts from its first stage (a machine powered on again starts over)."""
    options = options_of(ctx)
    with ctx.database.alone() as connection:
        rows = connection.execute(_STAGES, {"task_id": ctx.task_id}).all()
        site_name = rows[0].site if rows else task_site_name(connection, ctx.task_id)
    stages = [(row.name, row.title, row.event) for row in rows]
    pool = registry.site_queue(options.machine_pool, site_name)  # its site's
    with machine(ctx.data_dir, ctx.task_id) as (path, _):
        progress = Progress(ctx.task_id, 0, 0, time.time() + options.callback_delay_s, pool,
                            stages, ctx.vault.encrypt(ctx.callback_token()), options.fail_at,
                            options.callback_delay_s)
        save(path, progress)
    schedule(progress)


use_machine_scheduler(boot)


def retry_in(tries: int) -> float:
    return float(min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** (tries - 1)))


@app.task(name="octoprov.fake_machine_report", bind=True)  # type: ignore[untyped-decorator]  # celery: untyped
def report(self: CeleryTask, task_id: int, index: int) -> str:
    """Send the machine's next report, and the ones after it that are already due."""
    return deliver(task_id, index, self.request.hostname)


def deliver(task_id: int, index: int, worker: str | None) -> str:
    """The report ``index`` of the task's machine, if that is still the next one, sent as its message or the
    machine room delivers it (``worker``: the worker playing the machine, for the fake's event log)."""
    runtime = worker_runtime()
    data_dir = runtime.settings.data_dir
    with machine(data_dir, task_id) as (path, progress):
        if progress is None or progress.index != index:
            return "stale report"  # delivered twice, or the machine was powered on again since
        token = runtime.vault.decrypt(progress.token_encrypted)
        while True:
            if progress.index >= len(progress.stages):
                finish(path)
                return "all reported"
            name, title, event = progress.stages[progress.index]
            status = "failed" if progress.fail_at == name else "ok"
            body = {"taskId": task_id, "token": token, "event": event, "status": status,
                    "message": f"fake machine: {title}" + (" failed" if status == "failed" else " done")}
            answer = _post(callback_url(runtime.settings), body)
            record_in(data_dir, task_id, "callback", event=event, status=status, answer=answer,
                      worker=worker, attempt=progress.tries + 1)
            if _undelivered(answer):
                return _again(path, progress, f"{event}: {answer}", worker)
            if status != "ok" or not (answer.get("accepted") or answer.get("reason") == "duplicate"):
                finish(path)  # a failure reported, or Octoprov wants no more of it (a cancelled or final task)
                return f"{event}: {answer}"
            progress = replace(progress, index=progress.index + 1, tries=0, due=time.time() + progress.delay_s)
            save(path, progress)
            if progress.delay_s > 0 and progress.index < len(progress.stages):
                break  # the next stage comes later: its own timed message
    schedule(progress, worker)
    return f"{event}: {answer}"


def _undelivered(answer: dict[str, Any]) -> bool:
    """Worth trying again: no answer, a server error (503 while Octoprov's database is away), or a
    report that came before Octoprov was waiting for it."""
    status = answer.get("status")
    return ("error" in answer or (isinstance(status, int) and status >= 500)
            or answer.get("reason") == "out of order")


def _again(path: Path, progress: Progress, why: str, worker: str | None) -> str:
    """Schedule the same report again, or give up after as many tries as an answer file makes."""
    tries = progress.tries + 1
    wait_s = retry_in(tries)
    if tries >= CALLBACK_TRIES:
        finish(path)
        log.warning("fake machine of task %s gave up on report %s after %s tries: %s",
                    progress.task_id, progress.index, tries, why)
        return f"gave up: {why}"
    retry = replace(progress, tries=tries, due=time.time() + wait_s)
    save(path, retry)
    schedule(retry, worker)  # sent under the lock: harmless, it is delivered after its countdown
    return f"retry {tries} in {wait_s} s: {why}"


@app.task(name="octoprov.fake_machine_clock")  # type: ignore[untyped-decorator]  # celery: untyped
def clock() -> int:
    """Send again every report whose time is well past: its message was lost (a worker killed while it
    held it, a Redis restarted without persistence). Returns how many were sent."""
    data_dir = worker_runtime().settings.data_dir
    folder = progress_dir(data_dir)
    if not folder.is_dir():  # no fake machine was ever powered on here
        return 0
    now = time.time()
    sent = 0
    for path in sorted(folder.glob("task-*.json")):
        task_id = int(path.stem.removeprefix("task-"))
        with machine(data_dir, task_id) as (_, progress):
            if progress is None or progress.due > now - CLOCK_GRACE_S:
                continue
            progress = replace(progress, due=now)
            save(path, progress)  # due now: the next tick leaves it alone for the grace period
        schedule(progress)
        sent += 1
    return sent


def _worker_name() -> str | None:
    """The worker running the current Celery task, if any (none in the API, a command or a test)."""
    request = getattr(app.current_task, "request", None)
    return getattr(request, "hostname", None)


class _Room:
    """The simulated machines this worker process plays: each one's next report, sent by one thread at its
    time. A report handed in by a running task (the power-on step) waits for that task to end, as a machine
    starts to boot once it is powered on: by then the step's completion is committed and Octoprov waits for
    the report. What a report changes lives in the machine's record, so a process that dies with reports
    still to send loses nothing the clock does not send again (as for a lost message)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, int, str | None]] = []  # (due, task, report index, worker): a heap
        self._running = threading.local()  # ``held``: what the task running on this thread handed in
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, progress: Progress, worker: str | None) -> None:
        entry = (progress.due, progress.task_id, progress.index, worker)
        if threading.current_thread() is not self._thread and _worker_name() is not None:
            self._running.__dict__.setdefault("held", []).append(entry)
            return
        self._start([entry])

    def release(self) -> None:
        """The running task ended: its machines start."""
        held = self._running.__dict__.pop("held", None)
        if held:
            self._start(held)

    def _start(self, entries: list[tuple[float, int, int, str | None]]) -> None:
        with self._changed:
            first = self._due[0] if self._due else None
            for entry in entries:
                heapq.heappush(self._due, entry)
            if self._thread is None or not self._thread.is_alive():  # first use in this process (pool children fork)
                self._thread = threading.Thread(target=self._play, name="fake-machine-room", daemon=True)
                self._thread.start()
            if self._due[0] is not first:  # else the thread wakes in time anyway, as the lease renewer
                self._changed.notify()

    def _next(self) -> tuple[int, int, str | None]:
        with self._changed:
            while True:
                wait_s = self._due[0][0] - time.time() if self._due else None
                if wait_s is not None and wait_s <= 0:
                    _, task_id, index, worker = heapq.heappop(self._due)
                    return task_id, index, worker
                self._changed.wait(wait_s)

    def _play(self) -> None:
        while True:
            task_id, index, worker = self._next()
            try:
                deliver(task_id, index, worker)
            except Exception:  # the record still says what is next: the clock sends it again
                log.exception("fake machine of task %s: report %s failed", task_id, index)


_room = _Room()


@task_postrun.connect  # type: ignore[untyped-decorator]  # celery: untyped
def _start_machines(**_: Any) -> None:
    _room.release()


class _Link(threading.local):
    """The simulated machines' HTTP connection to the callback URL, kept between reports (one per thread of a
    worker process): the fake stands in for machines outside Octoprov, and opening a connection per report
    would charge the worker slots that play them, and the API, with setting up connections no real machine
    shares. A kept connection the server closed meanwhile is opened anew."""

    origin: tuple[str, str, int] | None = None
    connection: http.client.HTTPConnection | None = None

    def open(self, scheme: str, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        """The connection to that origin, and whether it was kept from an earlier report."""
        if self.connection is not None and self.origin == (scheme, host, port):
            return self.connection, True
        self.close()
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        self.connection, self.origin = kind(host, port, timeout=REPORT_TIMEOUT_S), (scheme, host, port)
        return self.connection, False

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection, self.origin = None, None


_link = _Link()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST one report; the answer's JSON, or what went wrong (``status`` of an HTTP error, ``error``). A kept
    connection that fails is tried once more on a new one: a report delivered twice is answered "duplicate"."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    data = json.dumps(body).encode()
    while True:
        connection, kept = _link.open(scheme, parts.hostname or "", port)
        try:
            connection.request("POST", parts.path or "/", body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            _link.close()
            if kept:
                continue
            return {"accepted": False, "error": str(exc)}
        if response.will_close:
            _link.close()
        if response.status >= 400:
            return {"accepted": False, "status": response.status}
        try:
            answer: dict[str, Any] = json.loads(payload or b"{}")
        except ValueError as exc:
            return {"accepted": False, "error": str(exc)}
        return answer
