"""Boot files at the edge: fetched from the central store on first use, verified by SHA-256, kept in a bounded
cache (least recently used evicted) and served from local disk.

Concurrent first requests for one file wait for one fetch. A file is written beside the cache and moved in only
once its digest matched, so a half-fetched or corrupted file is never served and never kept (what an edge
stopped mid-fetch left beside the cache is removed when the next one starts). Use is recorded in
the files' modification times, so the order of eviction survives a restart.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from octoprov.paths import confined

log = logging.getLogger(__name__)

Fetch = Callable[[str, BinaryIO], int]  # (path below /boot/, where to write) -> size; raises on failure


class NotCached(LookupError):
    """The file is not in the cache and could not be fetched (the centre is away or sent a bad copy)."""


class FileCache:
    def __init__(self, root: Path, limit_bytes: int, fetch: Fetch):
        self.root, self.limit, self._fetch = root, limit_bytes, fetch
        self.files, self.partial = root / "files", root / "partial"  # one file system: a rename moves a file in
        self.files.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self.files = self.files.resolve()
        for stale in self.partial.iterdir():  # fetches an earlier run did not finish (it was killed): never kept
            if stale.is_file():
                stale.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._used: OrderedDict[str, int] = OrderedDict()  # path -> size, least recently used first
        self.fetches = 0  # files fetched from the centre by this process (for tests and the status page)
        for path in sorted(self.files.rglob("*"), key=lambda found: found.stat().st_mtime_ns):
            if path.is_file():
                self._used[path.relative_to(self.files).as_posix()] = path.stat().st_size

    @property
    def size(self) -> int:
        with self._lock:
            return sum(self._used.values())

    def get(self, path: str) -> Path:
        """The local copy of boot file ``path`` (``images/...``), fetched first if needed. ValueError for a path
        that leaves the cache, NotCached when it cannot be had."""
        target = confined(self.files, path)
        relative = target.relative_to(self.files).as_posix()
        if self._touch(relative, target):
            return target
        with self._lock:
            single = self._fetching.setdefault(relative, threading.Lock())
        with single:  # one fetch a file: the others wait for it and find it kept
            if self._touch(relative, target):
                return target
            self._download(relative, target)
        return target

    def _touch(self, relative: str, target: Path) -> bool:
        with self._lock:
            if relative not in self._used:
                return False
            self._used.move_to_end(relative)
        try:
            os.utime(target)
        except FileNotFoundError:  # evicted or removed meanwhile
            with self._lock:
                self._used.pop(relative, None)
            return False
        return True

    def _download(self, relative: str, target: Path) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.partial)
        try:
            with os.fdopen(fd, "wb") as out:
                size = self._fetch(relative, out)
                out.flush()
                os.fsync(out.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            self._make_room(size)
            os.replace(temporary, target)
        except Exception as exc:
            Path(temporary).unlink(missing_ok=True)
            log.warning("boot file %s not cached: %s", relative, exc)
            raise NotCached(f"{relative}: {exc}") from exc
        with self._lock:
            self._used[relative] = size
            self.fetches += 1
        log.info("boot file %s fetched from the centre and verified (%d bytes)", relative, size)

    def _make_room(self, size: int) -> None:
        """Evict the least recently used files until ``size`` more bytes fit (a file larger than the bound is
        kept alone). A file being served stays readable: Linux keeps an open file until it is closed."""
        with self._lock:
            while self._used and sum(self._used.values()) + size > self.limit:
                relative, _ = self._used.popitem(last=False)
                (self.files / relative).unlink(missing_ok=True)
                log.info("boot file %s evicted from the cache", relative)
