"""Celery tasks. They take ids, not objects, and call into ``octoprov`` for the work."""

from __future__ import annotations

import os
import socket

from workers.app import app


@app.task(name="octoprov.ping", ignore_result=False)
def ping() -> dict:
    """Health check: which worker answered (used by `octoprov worker ping` and the tests)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}
