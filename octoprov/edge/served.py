"""What the edge served (MAC, task, action, time), kept until the centre has it: written on disk, so neither a
WAN outage nor an edge restart loses a line, and sent in batches whenever the centre can be reached."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from octoprov.edge.store import read_json, write_json
from octoprov.netboot.prepared import MAX_SERVED

KEEP_MAX = 50_000  # lines kept while the centre is away: past it the oldest go (a machine looping for days)
REPEAT_S = 60.0  # the same answer to the same machine at most once a minute (firmware retries)


class ServedLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        kept = read_json(path)
        self._lines: list[dict[str, Any]] = kept if isinstance(kept, list) else []
        self._last: dict[tuple[str, int, str, str], float] = {}

    def add(self, mac: str, task_id: int, action: str, kind: str, offline: bool) -> None:
        key = (mac, task_id, action, kind)
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -REPEAT_S) < REPEAT_S:
                return
            self._last[key] = now
            self._lines.append({"mac": mac, "taskId": task_id, "action": action, "kind": kind,
                                "at": datetime.now(UTC).isoformat(), "offline": offline})
            del self._lines[:-KEEP_MAX]
            write_json(self.path, self._lines)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lines[:MAX_SERVED])

    def sent(self, count: int) -> None:
        """The first ``count`` lines reached the centre."""
        with self._lock:
            del self._lines[:count]
            write_json(self.path, self._lines)
