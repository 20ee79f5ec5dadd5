"""Serving the API with gunicorn (threads; request bodies are streamed, not buffered)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from octoprov import logs
from octoprov.settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from api import create_app

        settings = Settings.from_env()
        logs.configure(settings.effective_log_dir, "api", settings.log_level)
        return create_app(settings)


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, writing the same access lines for less: gunicorn makes an atom of every request and
    response header and of the whole WSGI environ for each line, and escapes each of them, while its format
    (``access_log_format``) reads a handful. With a format that names no header nor environ entry (its
    default does not), only the plain atoms are made; and the time stamp is formatted once a second. While the
    access log is the plain file gunicorn opened (no logging configuration of its own), each line is written
    to it as its handler would write it, without a log record (the caller's frame looked up, thread and
    process names, filters): what the handler's own ``emit`` does, under the handler's lock, which a reopen
    of the log files (SIGUSR1) takes too."""

    _clock: tuple[int, str] = (0, "")

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        handler = self._plain_file() if self.access_log_enabled else None
        if handler is None:
            super().access(resp, req, environ, request_time)
            return
        try:
            line = self.cfg.access_log_format % self.atoms_wrapper_class(
                self.atoms(resp, req, environ, request_time))
            handler.acquire()
            try:
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
            finally:
                handler.release()
        except Exception:
            self.error(traceback.format_exc())

    def _plain_file(self) -> logging.StreamHandler[Any] | None:
        """The access log's one handler, when it is gunicorn's file with gunicorn's format and nothing else
        would see a record: else None (log through ``logging``)."""
        log = self.access_log
        handlers = log.handlers
        if len(handlers) != 1 or log.filters or log.propagate or not log.isEnabledFor(logging.INFO):
            return None
        handler = handlers[0]
        if (not isinstance(handler, logging.FileHandler) or not getattr(handler, "_gunicorn", False)
                or handler.filters or handler.level > logging.INFO or handler.stream is None
                or handler.formatter is None or handler.formatter._fmt != self.access_fmt):
            return None
        return handler

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        if "{" in self.cfg.access_log_format:
            return super().atoms(resp, req, environ, request_time)  # type: ignore[no-any-return]
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        seconds, microseconds = request_time.seconds, request_time.microseconds
        return {  # as gunicorn.glogging.Logger.atoms makes them
            "h": environ.get("REMOTE_ADDR", "-"), "l": "-", "u": self._get_user(environ) or "-", "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}", "s": status,
            "m": environ.get("REQUEST_METHOD"), "U": environ.get("PATH_INFO"), "q": environ.get("QUERY_STRING"),
            "H": environ.get("SERVER_PROTOCOL"), "b": str(sent) if sent is not None else "-", "B": sent,
            "f": environ.get("HTTP_REFERER", "-"), "a": environ.get("HTTP_USER_AGENT", "-"), "T": seconds,
            "D": seconds * 1000000 + microseconds, "M": seconds * 1000 + int(microseconds / 1000),
            "L": f"{seconds}.{microseconds:06d}", "p": f"<{os.getpid()}>",
        }

    def now(self) -> str:
        second = int(time.time())
        clock = self._clock
        if clock[0] != second:
            clock = self._clock = (second, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)))
        return clock[1]


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # api.metrics reads it; not imported here (see below)


def metrics_dir(settings: Settings) -> Path:
    """Where the API processes keep their counts for /metrics when there are several of them."""
    return settings.data_dir.resolve() / "metrics"


def _share_metrics(settings: Settings) -> None:
    """Several API processes: each counts into files of one folder, emptied now (the counts of an API
    that stopped are not this one's), and a scrape sums them. Set before any API module is loaded:
    prometheus_client decides where values go when first imported, which happens in the workers."""
    if settings.api_workers < 2:
        return
    folder = metrics_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(folder)


def serve(settings: Settings, host: str, port: int) -> None:
    log_dir = settings.effective_log_dir
    _share_metrics(settings)
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": settings.api_workers,
        "worker_class": "gthread",
        "threads": settings.api_threads,
        "timeout": 0,
        # gunicorn's maximum: upload metadata travels in the query string
        "limit_request_line": 8190,  # uploads of several GB may take long; clients time out on their own
        "accesslog": str(log_dir / "access.log"),
        "logger_class": AccessLogger,
        "errorlog": str(log_dir / "api-server.log"),  # gunicorn's own; the application logs to api.log
        "loglevel": settings.log_level.lower(),
        "proc_name": "octoprov-api",
        "post_worker_init": _after_worker_init,
    }).run()


def _after_worker_init(worker: Any) -> None:
    _end_streams_on_stop(worker)
    _render_boot_answers_ahead(worker)


def _render_boot_answers_ahead(worker: Any) -> None:
    """Each worker keeps the boot answers of the machines that may ask, rendered before they ask
    (octoprov/netboot/answercache.py): a boot storm then costs one indexed read a request."""
    from api.runtime import EXTENSION
    from octoprov.netboot.answercache import boot_answers

    runtime = worker.wsgi.extensions[EXTENSION]
    boot_answers(runtime.database, runtime.settings, runtime.vault).render_ahead()


def _end_streams_on_stop(worker: Any) -> None:
    """On SIGTERM, end this worker's event streams before gunicorn waits for its requests: an open UI
    page would otherwise hold every stop and restart for the whole graceful timeout (30 s)."""
    stop = worker.handle_exit

    def handle_exit(signum: int, frame: Any) -> None:
        from api.streams import STOPPING

        STOPPING.set()
        stop(signum, frame)

    signal.signal(signal.SIGTERM, handle_exit)
