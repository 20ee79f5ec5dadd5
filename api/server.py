"""Serving the API with gunicorn (threads; request bodies are streamed, not buffered)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

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


def serve(settings: Settings, host: str, port: int) -> None:
    log_dir = settings.effective_log_dir
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": settings.api_workers,
        "worker_class": "gthread",
        "threads": settings.api_threads,
        "timeout": 0,
        # gunicorn's maximum: upload metadata travels in the query string
        "limit_request_line": 8190,  # uploads of several GB may take long; clients time out on their own
        "accesslog": str(log_dir / "access.log"),
        "errorlog": str(log_dir / "api-server.log"),  # gunicorn's own; the application logs to api.log
        "loglevel": settings.log_level.lower(),
        "proc_name": "octoprov-api",
    }).run()
