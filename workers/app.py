"""The Celery application, configured from Octoprov's settings.

Long provisioning steps, idempotent tasks: ``acks_late`` so a killed worker's message is
redelivered, and a prefetch of one so a busy worker does not hoard messages. One queue
per worker pool; a task goes to the pool of its target type.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from octoprov.settings import Settings
from octoprov.targets import registry
from workers.redis_transport import TRANSPORT as REDIS_TRANSPORT


def is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def result_backend_for(broker_url: str, settings: Settings) -> str:
    if is_redis(broker_url):
        return broker_url
    return f"db+sqlite:///{(settings.data_dir / 'results.sqlite').resolve()}"


def _redis_options(settings: Settings) -> dict[str, int]:
    """A message whose worker died is delivered again after the visibility timeout (steps are
    idempotent). kombu looks for such messages every interval x throttle seconds (100 s by
    default); scan at a fifth of the timeout so a crash costs little more than the timeout."""
    timeout = settings.broker_visibility_timeout_s
    return {"visibility_timeout": timeout, "unacked_restore_interval": max(1, min(10, timeout // 5)),
            "unacked_restore_throttle": 1}


def make_celery(settings: Settings) -> Celery:
    """The Celery app for these settings: one queue per target pool (from the target registry).
    Creates no folders: the commands that run a worker or beat make them."""
    broker = settings.effective_broker_url
    app = Celery("octoprov", include=["workers.tasks", "workers.step_tasks", "workers.notify", "workers.fake_machine"])
    app.conf.update(
        broker_url=broker,
        result_backend=result_backend_for(broker, settings),
        result_expires=3600,
        task_ignore_result=True,  # the pipeline records its outcomes in the database; only ping answers
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_queues=[Queue(name) for name in registry.queues()],  # type: ignore[no-untyped-call]  # kombu: untyped
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
        beat_schedule={
            "check-deadlines": {"task": "octoprov.check_deadlines", "schedule": float(settings.deadline_check_s),
                                "options": {"queue": "default", "expires": float(settings.deadline_check_s)}},
            "fake-machine-clock": {"task": "octoprov.fake_machine_clock", "schedule": float(settings.deadline_check_s),
                                   "options": {"queue": "default", "expires": float(settings.deadline_check_s)}},
            "prune-audit": {"task": "octoprov.prune_audit", "schedule": 86400.0,
                            "options": {"queue": "default", "expires": 3600.0}},
            "prune-events": {"task": "octoprov.prune_events", "schedule": 86400.0,
                             "options": {"queue": "default", "expires": 3600.0}},
        },
        worker_hijack_root_logger=False,
        broker_transport_options=_redis_options(settings) if is_redis(broker) else {},
        broker_transport=REDIS_TRANSPORT if is_redis(broker) else None,  # survives a Redis restart
    )
    return app


app = make_celery(Settings.from_env())
