"""The runtime of a worker process, built once from the environment."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery.signals import worker_process_init

from octoprov.runtime import Runtime
from octoprov.settings import Settings
from workers.dispatch import Dispatcher

log = logging.getLogger(__name__)


@functools.cache
def worker_runtime() -> Runtime:
    return Runtime.from_settings(Settings.from_env())


@functools.cache
def worker_dispatcher() -> Dispatcher:
    from octoprov.sites import SiteLookup
    from workers.app import app

    return Dispatcher(app, SiteLookup(worker_runtime().database))


@worker_process_init.connect  # type: ignore[untyped-decorator]  # celery: untyped
def _ready(**_: Any) -> None:
    """Each pool process builds its runtime (and imports the database driver) as it starts, not on its first
    message, which would wait for it. One that cannot be built now is built by the first task, which reports why."""
    try:
        worker_runtime()
    except Exception as exc:  # a process that cannot start would be replaced in a loop; a task fails clearly
        log.warning("worker runtime not ready at start: %s", exc)
