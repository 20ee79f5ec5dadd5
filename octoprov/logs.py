"""Process logging to files under the log folder, with secrets kept out of them.

Secrets are never passed to a logger on purpose; the redaction filter is the second
line of defence, masking any value registered as secret and ``password=…``-style pairs
should one slip through (for example inside a library's exception text).
"""

from __future__ import annotations

import logging
import re
import threading
from logging.handlers import WatchedFileHandler
from pathlib import Path

_PAIR = re.compile(r"(?i)(password|passwd|secret|token|productkey|product_key|authorization)"
                   r"(['\"]?\s*[:=]\s*['\"]?)([^'\"\s,;&}]+)")
MASK = "********"
_OURS = "_octoprov"  # marks the handlers configure() added, so that a second call replaces them


class SecretRedactor(logging.Filter):
    """Masks secret values this process has seen (the newest ``capacity`` of them) and
    ``password=…``-style pairs in every record that reaches a handler."""

    def __init__(self, capacity: int = 10_000):
        super().__init__()
        self._values: dict[str, None] = {}  # insertion-ordered, so the oldest go first
        self._capacity = capacity
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= 4:
                    self._values.pop(value, None)
                    self._values[value] = None
            while len(self._values) > self._capacity:
                del self._values[next(iter(self._values))]

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, MASK)
        return _PAIR.sub(lambda m: m.group(1) + m.group(2) + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


redactor = SecretRedactor()


def configure(log_dir: Path, name: str, level: str = "INFO") -> Path:
    """Send this process's logs to ``log_dir/<name>.log`` (and stderr), through the redactor."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}.log"
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
    for handler in (WatchedFileHandler(path), logging.StreamHandler()):
        setattr(handler, _OURS, True)
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        root.addHandler(handler)
    return path
