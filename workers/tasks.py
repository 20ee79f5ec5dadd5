"""Celery tasks. They take ids, not objects, and call into ``octoprov`` for the work."""

from __future__ import annotations

import os
import socket
from typing import Any

from workers.app import app


@app.task(name="octoprov.ping", ignore_result=False)  # type: ignore[untyped-decorator]  # celery: untyped
def ping() -> dict[str, Any]:
    """Health check: which worker answered (used by `octoprov worker ping` and the tests)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}
