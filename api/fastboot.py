"""GET /pxe/boot served before Flask's dispatch: in a boot storm it is nearly every request the API gets.

The route (``api.resources.pxe.Boot``) answers through ``boot_config``, and so does this WSGI middleware
in front of the Flask app, for the requests whose answer is the plain iPXE script: a GET of exactly that
path that does not ask for JSON. Everything else, and any request whose answer is not a 200 (a bad MAC,
the database away, any error), is handed to the Flask app unchanged, which answers it as it always did:
so the statuses, headers, error bodies and the route's openness are the route's own. What Flask does
around the route is done here too: the request counted in ``octoprov_api_request_duration_seconds`` under
the route's rule, the boot answer counted, the boot logged on the task. Nothing of it needs Flask's
request or application context.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.wrappers import Request

from api.metrics import EXTENSION as METRICS
from api.runtime import EXTENSION as RUNTIME
from octoprov.netboot.answercache import BootAnswers, boot_answers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BOOT_PATH = "/api/v1/provisioning/pxe/boot"  # the route's rule: the request counts under it, as Flask counts it


class BootFastPath:
    """The WSGI app that answers GET /pxe/boot with the script itself and hands every other request on."""

    def __init__(self, app: Flask, wsgi_app: WSGIApplication):
        self.app, self.wsgi_app = app, wsgi_app
        self._answers: BootAnswers | None = None
        self._timer: Any = None  # the request-duration histogram's child for this route, method and status

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != BOOT_PATH or environ.get("REQUEST_METHOD") != "GET":
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        from api.resources.pxe import boot_config, wants_json

        asked = Request(environ, populate_request=False)
        metrics = self.app.extensions[METRICS]
        try:
            if wants_json(asked):
                return self.wsgi_app(environ, start_response)
            answer = boot_config(asked, self._boot_answers(), metrics)
        except Exception:  # the route answers it, as it answers every error (raised before any effect)
            return self.wsgi_app(environ, start_response)
        body = answer.script.encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        if self._timer is None:
            self._timer = metrics.requests.labels(BOOT_PATH, "GET", "200")
        self._timer.observe(time.perf_counter() - started)
        return [body]

    def _boot_answers(self) -> BootAnswers:
        if self._answers is None:
            found: Any = self.app.extensions[RUNTIME]
            self._answers = boot_answers(found.database, found.settings, found.vault)
        return self._answers
