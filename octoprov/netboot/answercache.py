"""Boot answers kept per MAC in each serving process, so a boot storm costs at most one indexed read a request.

A boot answer (install script, GRUB configuration or local boot) depends only on the MAC's tasks and their
steps, and every change of those is numbered by the database's triggers (``task_events`` of kind "task": a
task inserted or updated, a step updated), whichever process made it. So each entry is kept with the MAC's
*stamp*, the number and the newest id of its tasks' "task" events, and a request reads only the stamp: the
same stamp serves the kept answer (no task or step query, no decrypt, no render); any change, committed
by any API process or worker, changes the stamp, and the very next request renders the answer anew. The
count is part of the stamp because PostgreSQL hands out ids before commit: a change committed late under
a lower id still adds one to the count. A log line (kind "log") changes no answer, and so no stamp: the
boot lines this cache writes itself would otherwise make every answer be rendered again. On SQLite not even
the stamp is read while nothing at all was committed since it was last found current (``ChangeClock``).

What is not in the stamp (an image's files edited in place, a setting) is picked up after ``MAX_AGE_S``.
The boot log lines are written by a background thread, once a minute per task and message at most, never
on the request path; a machine's SMBIOS facts are written only when they differ from what was kept.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select
from sqlalchemy.exc import DBAPIError

from octoprov import states
from octoprov.crypto import Vault
from octoprov.db import Database, autocommit
from octoprov.models import Task, TaskEvent
from octoprov.netboot.bootconfig import BootAnswer, active_task_for_mac, answer_for, record_boots
from octoprov.settings import Settings
from octoprov.targets import registry

log = logging.getLogger(__name__)

MAX_AGE_S = 30.0  # the longest an answer is kept without being rendered anew
LOG_EVERY_S = 60  # the same boot line of a task at most this often
MAX_ENTRIES = 100_000  # a bound on memory: past it the cache starts again empty
WARM_EVERY_S = 0.25  # how often the answers of changed tasks are rendered ahead
WARM_SETTLE_S = 1.0  # once their task has not changed for this long: a task in mid-pipeline changes many times
WARM_RETRY_S = 5.0  # and how often it tries again while the database is away

Stamp = tuple[int, int | None]  # the number of events of the MAC's tasks, and the newest one's id


@dataclass(frozen=True)
class Entry:
    stamp: Stamp
    answer: BootAnswer
    task_id: int | None  # the MAC's active task, to log the boot on: also when its answer is a local boot
    hardware: Mapping[str, str]  # the SMBIOS facts stored for it: a request bringing new ones renders anew
    checked: int | None = None  # the ChangeClock's count when the stamp was last found current (None: never)
    made: float = field(default_factory=time.monotonic)


_STAMP = (select(func.count(TaskEvent.id), func.max(TaskEvent.id))
          .join(Task, Task.id == TaskEvent.task_id)
          .where(Task.mac_address == bindparam("mac"), TaskEvent.kind == "task"))
"""Built once: the statement is the same for every request, only the MAC is bound."""


_STAMPS = (select(Task.mac_address, func.count(TaskEvent.id), func.max(TaskEvent.id))
           .join(Task, Task.id == TaskEvent.task_id)
           .where(Task.mac_address.in_(bindparam("macs", expanding=True)), TaskEvent.kind == "task")
           .group_by(Task.mac_address))


def stamps_of(connection: Connection, macs: list[str]) -> dict[str, Stamp]:
    """The stamps of several MACs in one read (as ``StampReader`` reads one): a MAC with no task has (0, None)."""
    found = {mac: (int(count), newest) for mac, count, newest in connection.execute(_STAMPS, {"macs": macs})}
    return {mac: found.get(mac, (0, None)) for mac in macs}


class StampReader:
    """One MAC's stamp for the request path: the statement compiled once for the engine's dialect and run on the
    driver's own cursor, a pooled connection checked out as for any statement (pinged if it sat idle: see db).
    SQLAlchemy's execution layer costs several times the indexed read itself, and a boot storm pays it on
    every request. A driver error is raised as SQLAlchemy raises it (``DBAPIError``; a lost connection is
    invalidated and says so), so the API answers an outage with its 503 as before."""

    def __init__(self, engine: Engine):
        self.engine = engine
        compiled = _STAMP.compile(dialect=engine.dialect)
        self.sql = compiled.string
        self._params = compiled.construct_params({"mac": None})
        self._order = compiled.positiontup if engine.dialect.positional else None

    def __call__(self, mac: str) -> Stamp:
        params = {**self._params, "mac": mac}
        args: Any = tuple(params[name] for name in self._order) if self._order is not None else params
        dialect = self.engine.dialect
        try:
            connection = self.engine.raw_connection()  # the pool raises the driver's errors as they are
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=dialect.is_disconnect(exc, None, None),
                                      dialect=dialect) from exc
        try:
            # psycopg: the read alone, in autocommit: no BEGIN and no ROLLBACK round trips around it, and a rollback
            # (the pool's reset when a connection comes back) would also forget the statement prepared on the server
            with autocommit(connection):
                cursor = connection.cursor()
                try:
                    cursor.execute(self.sql, args)
                    row = cursor.fetchone()
                    assert row is not None  # an aggregate without GROUP BY has its one row
                    count, newest = row
                finally:
                    cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, connection.dbapi_connection, None)
            if lost and connection.is_valid:
                connection.invalidate(exc)
            raise DBAPIError.instance(self.sql, args, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect) from exc
        finally:
            connection.close()
        return int(count), newest


class ChangeClock:
    """Whether anything at all was committed to the database since a moment, for almost nothing: SQLite counts
    the commits of every other connection, of any process (``PRAGMA data_version``: no table read, no SQL
    execution layer), so while that count stays the same no stamp can have changed and a request needs not
    read its MAC's. Any commit, whoever made it, moves the clock on, and the next request of each MAC reads
    its stamp again. PostgreSQL has no such counter that is current at commit: there ``now`` is None and
    every request reads its stamp.

    Each thread asks on a connection of its own (no lock on the request path); the first time a thread's
    connection sees a commit it moves the process's count on. So a count handed out before a commit is never
    handed out after it: the first read after the commit, on any thread, sees the commit or a count already
    moved on by a read that saw it."""

    def __init__(self, engine: Engine):
        database = engine.url.database or ""
        self.enabled = (engine.dialect.name == "sqlite" and database not in ("", ":memory:")
                        and "mode=memory" not in database)  # an in-memory database is each connection's own
        self._engine = engine
        self._lock = threading.Lock()
        self._local = threading.local()
        self._count = 0

    def now(self) -> int | None:
        """The number of changes this process has seen so far; None: unknown (read the stamp)."""
        if not self.enabled:
            return None
        local = self._local
        try:
            connection = getattr(local, "connection", None)
            if connection is None or local.pid != os.getpid():  # not a connection forked with the process
                cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
                connection = self._engine.dialect.loaded_dbapi.connect(*cargs, **{**cparams,
                                                                                  "check_same_thread": False})
                local.connection, local.pid, local.version = connection, os.getpid(), None
            version = connection.execute("PRAGMA data_version").fetchone()[0]
        except self._engine.dialect.loaded_dbapi.Error:  # the stamp is read instead, and raises what is wrong
            local.connection = None
            return None
        if version != local.version:  # a commit since this thread last asked (or its first question)
            local.version = version
            with self._lock:
                self._count += 1
                return self._count
        return self._count


class BootAnswers:
    """The answers this process gives, by MAC, and the writer of their boot log lines."""

    def __init__(self, database: Database, settings: Settings, vault: Vault):
        self.database, self.settings, self.vault = database, settings, vault
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._boot_lines: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._logged: dict[int, tuple[str, float]] = {}  # task -> its last boot line queued, and when
        self._writer: threading.Thread | None = None
        self._unwritten = 0  # lines queued and not yet written (or given up)
        self._written = threading.Condition(self._lock)
        self._warmer: threading.Thread | None = None
        self._stamp = StampReader(database.engine)
        self._clock = ChangeClock(database.engine)

    def render_ahead(self) -> None:
        """Start rendering answers ahead in this process (the API server's workers and the PXE service
        do): until then, and in tests, each answer is rendered by the first request that needs it."""
        with self._lock:
            if self._warmer is None or not self._warmer.is_alive():
                self._warmer = threading.Thread(target=self._warm, name="boot-answers", daemon=True)
                self._warmer.start()

    def _warm(self) -> None:
        """Render ahead what machines will ask, so that even a machine's first request finds its answer:
        every active task's MAC at first, then the MAC of each task that changed, once it has not changed for
        ``WARM_SETTLE_S`` (read from the task events every ``WARM_EVERY_S``). A task in mid-pipeline changes
        at every step, and rendering each of its answers ahead would cost more than the one request, if any,
        that renders for itself meanwhile. Tasks that ended are left out: their machines ask, if ever, after a
        power cut, long past an entry's ``MAX_AGE_S``, and a request renders such a (local boot) answer itself;
        so are the fake target's, whose machines ask nothing. Only a head start: a request still checks the stamp
        itself."""
        newest: int | None = None
        changed: dict[str, float] = {}  # MAC -> when its task was last seen changing
        failing = False
        while True:
            try:
                newest = self._warm_once(newest, changed)
                failing = False
            except Exception as exc:  # the database is away: requests render for themselves meanwhile
                if not failing:
                    log.warning("boot answers: cannot render ahead for now: %s", type(exc).__name__)
                failing = True
            time.sleep(WARM_RETRY_S if failing else WARM_EVERY_S)

    def _warm_once(self, newest: int | None, changed: dict[str, float]) -> int:
        """One round of rendering ahead: notes in ``changed`` the MACs whose tasks changed since event ``newest``,
        renders those that have settled (all of them on the first round) and returns the newest event seen."""
        checked = self._clock.now()  # before the stamps: a commit after it moves the clock on
        now = time.monotonic()
        with self.database.alone() as connection:  # reads only: no transaction around them
            if newest is None:
                newest = connection.execute(select(func.max(TaskEvent.id))).scalar() or 0
                for mac in connection.execute(
                        select(Task.mac_address).where(Task.status.in_(states.ACTIVE), Task.mac_address.is_not(None),
                                                       Task.target_type.in_(registry.answering_target_names()))
                        .limit(MAX_ENTRIES)).scalars():
                    if mac:
                        changed[mac] = now - WARM_SETTLE_S
            else:
                rows = connection.execute(
                    select(TaskEvent.id, Task.mac_address).join(Task, Task.id == TaskEvent.task_id)
                    .where(TaskEvent.id > newest, TaskEvent.kind == "task", Task.status.in_(states.ACTIVE),
                           Task.target_type.in_(registry.answering_target_names()))
                    .order_by(TaskEvent.id)
                    .limit(10_000)).all()
                newest = rows[-1].id if rows else newest
                changed.update((row.mac_address, now) for row in rows if row.mac_address)
            settled = [mac for mac, when in changed.items() if now - when >= WARM_SETTLE_S]
            for start in range(0, len(settled), 500):  # a bounded number of parameters a statement
                for mac, stamp in stamps_of(connection, settled[start:start + 500]).items():
                    kept = self._entries.get(mac)
                    if kept is None or kept.stamp != stamp:
                        self._render(mac, stamp, {}, checked)
            for mac in settled:
                del changed[mac]
        return newest

    def answer(self, mac: str, hardware: Mapping[str, str | None]) -> tuple[BootAnswer, int | None]:
        """The boot answer for ``mac`` and the active task it belongs to (None: no active task)."""
        seen = {name: value for name, value in hardware.items() if value}
        checked = self._clock.now()  # read first: a commit after it moves the clock on for the next request
        kept = self._entries.get(mac)
        usable = (kept is not None and time.monotonic() - kept.made < MAX_AGE_S
                  and seen.items() <= kept.hardware.items())
        if usable and checked is not None and kept is not None and kept.checked == checked:
            return kept.answer, kept.task_id  # nothing was committed since its stamp was found current
        stamp = self._stamp(mac)  # no ORM session, not even SQLAlchemy's execution: this is the whole hot path
        if usable and kept is not None and kept.stamp == stamp:
            if checked is not None and kept.checked != checked:
                self._entries[mac] = replace(kept, checked=checked)
            return kept.answer, kept.task_id
        return self._render(mac, stamp, seen, checked)

    def _render(self, mac: str, stamp: Stamp, seen: dict[str, str],
                checked: int | None) -> tuple[BootAnswer, int | None]:
        """Render the answer, and keep it under ``stamp`` (read before: a change in between makes a new one),
        current at the clock's ``checked``."""
        with self.database.session() as session:
            task = active_task_for_mac(session, mac)
            answer = answer_for(session, self.settings, self.vault, mac, task, seen)
            stored = dict((task.hardware or {}) if task is not None else seen)
            task_id = task.id if task is not None else None
            wrote = bool(session.new or session.dirty)
        if wrote:  # new SMBIOS facts were stored: the next request keeps the answer, under the stamp they made
            return answer, task_id
        entry = Entry(stamp, answer, task_id, stored, checked)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[mac] = entry
        return answer, task_id

    def log_boot(self, task_id: int, line: str) -> None:
        """Record on the task's log that its machine fetched a boot answer: queued for the writer thread,
        and only when this line was not queued for the task within the last minute."""
        now = time.monotonic()
        with self._lock:
            last = self._logged.get(task_id)
            if last is not None and last[0] == line and now - last[1] < LOG_EVERY_S:
                return
            self._logged[task_id] = (line, now)
            self._unwritten += 1
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_lines, name="boot-log", daemon=True)
                self._writer.start()
        self._boot_lines.put((task_id, line))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued boot line is written; False if that took longer than ``timeout``."""
        with self._written:
            return self._written.wait_for(lambda: self._unwritten == 0, timeout)

    def _write_lines(self) -> None:
        """Write queued boot lines, a batch a transaction; an error loses that batch's lines, logged."""
        while True:
            batch = [self._boot_lines.get()]
            time.sleep(0.2)  # let a storm's lines gather into one transaction
            while not self._boot_lines.empty():
                batch.append(self._boot_lines.get())
            try:
                with self.database.session() as session:
                    record_boots(session, batch, LOG_EVERY_S)
            except Exception:
                log.exception("boot log: %d lines not written", len(batch))
            finally:
                with self._written:
                    self._unwritten -= len(batch)
                    self._written.notify_all()


_caches: dict[int, BootAnswers] = {}
_caches_lock = threading.Lock()


def boot_answers(database: Database, settings: Settings, vault: Vault) -> BootAnswers:
    """The process's cache for this database (one per runtime: a test may run several)."""
    with _caches_lock:
        cache = _caches.get(id(database))
        if cache is None or cache.database is not database:
            cache = _caches[id(database)] = BootAnswers(database, settings, vault)
        return cache


def flush_all(timeout: float = 10.0) -> bool:
    """Wait until every cache of this process has written its boot lines (for tests and shutdown)."""
    with _caches_lock:
        caches = list(_caches.values())
    return all(cache.flush(timeout) for cache in caches)
