"""Webhook deliveries as Celery tasks: one message per URL, retried with growing delays.

A receiver that is down must neither fail the provisioning task nor hold up its worker, so
each delivery is its own message on the ``default`` queue; its outcome only ever adds a line
to the task's log.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from celery import Celery
from celery.app.task import Task as CeleryTask

from octoprov import metrics
from octoprov.db import Database
from octoprov.models import Task, TaskLog
from octoprov.settings import Settings
from octoprov.webhooks import DeliveryFailed, deliver, event_for, host_of, task_payload, webhook_urls
from workers.app import app

NOTIFY_TASK = "octoprov.notify_webhook"
LOG_STEP = "notify"

logger = logging.getLogger(__name__)

_databases: dict[tuple[int, str], Database] = {}


def database_for(settings: Settings) -> Database:
    """One Database (engine and pool) per worker process: keyed by PID as well, since a pool
    inherited through a fork must not be shared with the parent."""
    key = (os.getpid(), settings.effective_database_url)
    if key not in _databases:
        _databases[key] = Database.from_settings(settings)
    return _databases[key]


def _log(database: Database, task_id: int, message: str, level: str) -> None:
    """Add a task log line, unless the task was deleted meanwhile (its logs went with it)."""
    with database.session() as session:
        if session.get(Task, task_id) is None:
            logger.info("task %s is gone; not logged: %s", task_id, message)
            return
        session.add(TaskLog(task_id=task_id, message=message, level=level, step=LOG_STEP))


def _count(database: Database, counter: metrics.DbCounter, **labels: str) -> None:
    """Count in the database: this worker may run on any host, and /metrics reads it from there."""
    with database.session() as session:
        metrics.increment(session, counter, labels)


@app.task(bind=True, name=NOTIFY_TASK, ignore_result=True)  # type: ignore[untyped-decorator]  # celery: untyped
def notify_webhook(self: CeleryTask, task_id: int, url: str, event: str, delivery_id: str,
                   body: dict[str, Any] | None = None) -> None:
    """Deliver one notification. ``body`` is filled in by the first attempt and handed to the
    retries, so every attempt sends (and signs) the same bytes even if the task changes."""
    settings = Settings.from_env()
    database = database_for(settings)
    host = host_of(url)
    if body is None:
        with database.session() as session:
            task = session.get(Task, task_id)
            if task is None:
                logger.info("task %s is gone; webhook to %s dropped", task_id, host)
                _count(database, metrics.WEBHOOK_DELIVERIES, event=event, outcome="dropped")
                return
            body = task_payload(task, event)
    try:
        status = deliver(url, event, delivery_id, body, settings.webhook_secret, settings.webhook_timeout_s)
    except DeliveryFailed as exc:
        attempt = self.request.retries
        if attempt < settings.webhook_retries:
            _count(database, metrics.WEBHOOK_RETRIES, event=event)
            raise self.retry(
                exc=exc,
                kwargs={"body": body},
                countdown=settings.webhook_retry_base_s * 2**attempt,
                max_retries=settings.webhook_retries,
            ) from None
        _log(database, task_id, f"webhook to {host} failed after {attempt + 1} attempt(s): {exc}", "warn")
        _count(database, metrics.WEBHOOK_DELIVERIES, event=event, outcome="failed")
        return
    _log(database, task_id, f"webhook delivered to {host} (HTTP {status})", "info")
    _count(database, metrics.WEBHOOK_DELIVERIES, event=event, outcome="delivered")


def enqueue_notifications(celery_app: Celery, settings: Settings, task: Task) -> list[str]:
    """Queue one delivery per webhook URL of a task that has ended; the URLs queued.

    Call it after the commit that ended the task (the worker reads the task row, and might
    otherwise not see it yet); a task still running queues nothing.
    """
    event = event_for(task.status)  # None unless the status is one of states.FINAL
    if event is None:
        return []
    urls = webhook_urls(settings, task)
    for url in urls:
        celery_app.send_task(NOTIFY_TASK, args=[task.id, url, event, str(uuid.uuid4())], queue="default")
    return urls
