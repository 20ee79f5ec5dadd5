"""A second reference for the pipeline bench: Celery chains whose every task commits one row to PostgreSQL.

Octoprov records each step durably (a task killed at any moment is resumed, never run twice), so a step
costs at least one PostgreSQL transaction; bare no-op chains pay none. Chains of the same length whose tasks
each commit one row update, on the same broker and database, show the floor any durable pipeline starts
from. Run as its own Celery worker: ``celery -A bench.durable_reference worker``.
"""

from __future__ import annotations

from kombu import Queue
from sqlalchemy import Column, Engine, Integer, MetaData, Table, bindparam, update

from octoprov.db import make_engine
from octoprov.settings import Settings
from workers.app import make_celery

QUEUE = "durable-reference"
TASK = "bench.durable_step"

ROWS = Table("bench_durable_steps", MetaData(), Column("id", Integer, primary_key=True),
             Column("done", Integer, nullable=False, default=0))
_STEP = update(ROWS).where(ROWS.c.id == bindparam("b_id")).values(done=ROWS.c.done + 1)

_settings = Settings.from_env()
app = make_celery(_settings)  # Octoprov's own Celery configuration: the same broker, acks and prefetch
app.conf.task_queues = [Queue(QUEUE)]  # type: ignore[no-untyped-call]  # kombu: untyped
_engine: Engine | None = None


def engine() -> Engine:
    """One engine per worker process, made on first use (after the fork), as Octoprov's workers do."""
    global _engine
    if _engine is None:
        _engine = make_engine(_settings.effective_database_url)
    return _engine


def prepare(database_url: str, rows: int) -> None:
    """The table, one row per chain."""
    bench_engine = make_engine(database_url)
    ROWS.drop(bench_engine, checkfirst=True)
    ROWS.create(bench_engine)
    with bench_engine.begin() as connection:
        connection.execute(ROWS.insert(), [{"id": row, "done": 0} for row in range(rows)])
    bench_engine.dispose()


@app.task(name=TASK, ignore_result=False)  # type: ignore[untyped-decorator]  # celery: untyped
def durable_step(row: int) -> None:
    """One step's durable record: one row updated in its own transaction."""
    with engine().begin() as connection:
        connection.execute(_STEP, {"b_id": row})
