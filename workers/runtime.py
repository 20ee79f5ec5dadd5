"""The runtime of a worker process, built once from the environment."""

from __future__ import annotations

import functools

from octoprov.runtime import Runtime
from octoprov.settings import Settings
from workers.dispatch import Dispatcher


@functools.cache
def worker_runtime() -> Runtime:
    return Runtime.from_settings(Settings.from_env())


@functools.cache
def worker_dispatcher() -> Dispatcher:
    from octoprov.sites import SiteLookup
    from workers.app import app

    return Dispatcher(app, SiteLookup(worker_runtime().database))
