"""Prometheus metrics that are facts in the database: read at scrape time, so every API process
and every scrape agrees, wherever the workers that made them run.

Tasks by state and target and the durations of finished steps come from the task tables; the
counters that Celery workers add to (webhook deliveries) live in ``metric_counters``, one row per
label set, incremented in place. What one API process sees per request (latency, callbacks) is
counted in that process instead: ``api.metrics``. Every name here is documented in
docs/metrics.md; label values are bounded (states, target types, step names, events), never a
host name, MAC, address or secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.db import Database
from octoprov.errors import is_infrastructure
from octoprov.models import MetricCounter, Task, TaskStep

log = logging.getLogger(__name__)

# A step takes from a second (rendering answer files) to hours (a Windows installation).
STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
DONE = "done"  # octoprov.pipeline.StepStatus.DONE; the pipeline imports too much to be imported here


@dataclass(frozen=True)
class DbCounter:
    """A counter kept in ``metric_counters``: its exposed name (without ``_total``), help and labels."""

    name: str
    documentation: str
    labels: tuple[str, ...]


WEBHOOK_DELIVERIES = DbCounter(
    "octoprov_webhook_deliveries", "Webhook notifications by event and final outcome: delivered, failed (after "
    "every retry) or dropped (the task was deleted before the first attempt).", ("event", "outcome"))
WEBHOOK_RETRIES = DbCounter(
    "octoprov_webhook_retries", "Webhook delivery attempts that failed and were scheduled again, by event.",
    ("event",))
DB_COUNTERS = (WEBHOOK_DELIVERIES, WEBHOOK_RETRIES)


def increment(session: Session, counter: DbCounter, labels: Mapping[str, str], amount: int = 1) -> None:
    """Add ``amount`` to one series of ``counter``, atomically on either backend (an upsert), so
    processes on several hosts may count at once."""
    if set(labels) != set(counter.labels):
        raise ValueError(f"{counter.name} takes the labels {', '.join(counter.labels)}")
    key = json.dumps({name: str(labels[name]) for name in counter.labels}, sort_keys=True, separators=(",", ":"))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(MetricCounter).values(name=counter.name, labels=key, value=amount)
    session.execute(statement.on_conflict_do_update(
        index_elements=[MetricCounter.name, MetricCounter.labels], set_={"value": MetricCounter.value + amount}))


def _step_seconds(session: Session) -> ColumnElement[Any]:
    """A finished step's duration in seconds, never below 0 (clocks of two hosts may disagree)."""
    seconds: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", TaskStep.finished_at - TaskStep.started_at)
    else:  # SQLite keeps datetimes as text, which julianday() reads
        seconds = (func.julianday(TaskStep.finished_at) - func.julianday(TaskStep.started_at)) * 86400.0
    return case((seconds < 0, 0.0), else_=seconds)


class DatabaseCollector(Collector):
    """Reads the database on each scrape. A database that cannot be read yields only
    ``octoprov_database_up 0`` (the scrape itself still answers)."""

    def __init__(self, database: Database):
        self.database = database

    def describe(self) -> list[Metric]:
        """The families without reading the database (registering must not need it)."""
        return [self._up(1), *self._families(None)]

    def collect(self) -> Iterator[Metric]:
        try:
            with self.database.session() as session:
                families = list(self._families(session))
        except SQLAlchemyError as exc:
            if is_infrastructure(exc):  # an outage: one line a scrape, never the statement or a traceback
                log.warning("metrics: the database is unreachable (%s)", type(exc).__name__)
            else:
                log.exception("metrics: the database could not be read")
            yield self._up(0)
            return
        yield self._up(1)
        yield from families

    @staticmethod
    def _up(value: int) -> GaugeMetricFamily:
        return GaugeMetricFamily("octoprov_database_up", "1 when this scrape could read the database, else 0.",
                                 value=value)

    def _families(self, session: Session | None) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("octoprov_tasks", "Tasks by state and target type (every state of each target "
                                  "type that has tasks).", labels=["state", "target"])
        durations = HistogramMetricFamily(
            "octoprov_step_duration_seconds", "Duration of finished (done) task steps, from start to finish, by "
            "target type and step.", labels=["target", "step"])
        counters = {counter: CounterMetricFamily(counter.name, counter.documentation, labels=list(counter.labels))
                    for counter in DB_COUNTERS}
        if session is not None:
            self._count_tasks(session, tasks)
            self._durations(session, durations)
            self._counters(session, counters)
        yield tasks
        yield durations
        yield from counters.values()

    @staticmethod
    def _count_tasks(session: Session, family: GaugeMetricFamily) -> None:
        counted: dict[str, dict[str, int]] = {}
        rows = session.execute(select(Task.target_type, Task.status, func.count()).group_by(Task.target_type,
                                                                                             Task.status))
        for target, state, number in rows:
            counted.setdefault(target, {})[state] = number
        for target in sorted(counted):
            for state in (*states.ALL, *sorted(set(counted[target]) - set(states.ALL))):
                family.add_metric([state, target], counted[target].get(state, 0))

    @staticmethod
    def _durations(session: Session, family: HistogramMetricFamily) -> None:
        seconds = _step_seconds(session)
        below = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in STEP_BUCKETS]
        rows = session.execute(
            select(Task.target_type, TaskStep.name, func.count(), func.sum(seconds), *below)
            .join(Task, Task.id == TaskStep.task_id)
            .where(TaskStep.status == DONE, TaskStep.started_at.is_not(None), TaskStep.finished_at.is_not(None))
            .group_by(Task.target_type, TaskStep.name).order_by(Task.target_type, TaskStep.name))
        for target, step, number, total, *cumulative in rows:
            buckets = [(str(bound), int(count or 0)) for bound, count in zip(STEP_BUCKETS, cumulative, strict=True)]
            family.add_metric([target, step], [*buckets, ("+Inf", int(number))], float(total or 0.0))

    @staticmethod
    def _counters(session: Session, families: dict[DbCounter, CounterMetricFamily]) -> None:
        by_name = {counter.name: counter for counter in families}
        rows = session.execute(select(MetricCounter.name, MetricCounter.labels, MetricCounter.value)
                               .where(MetricCounter.name.in_(by_name)).order_by(MetricCounter.name,
                                                                                 MetricCounter.labels))
        for name, key, value in rows:
            counter = by_name[name]
            labels = json.loads(key)
            if set(labels) != set(counter.labels):  # written by another version: not this metric's series
                continue
            families[counter].add_metric([labels[label] for label in counter.labels], value)
