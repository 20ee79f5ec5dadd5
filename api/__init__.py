"""The Flask application: management API under /api/v1 with its OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from api import outage
from api.auditing import register_audit
from api.auth import check_declared_roles
from api.docs import ErrorHandling, make_api
from api.runtime import DISPATCH, EXTENSION
from octoprov.errors import InvalidRequest, OctoprovError, is_infrastructure
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from octoprov.sites import SiteLookup
from workers.dispatch import Dispatcher

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None,
               dispatcher: Dispatcher | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(RESTX_ERROR_404_HELP=False, RESTX_MASK_SWAGGER=False, JSON_SORT_KEYS=False)
    runtime = runtime or Runtime.from_settings(settings or Settings.from_env())
    app.extensions[EXTENSION] = runtime
    app.extensions[DISPATCH] = dispatcher or _sender(runtime)
    if isinstance(dispatcher, Dispatcher) and dispatcher.sites is None:  # a test's: tasks of sites go to their queues
        dispatcher.sites = SiteLookup(runtime.database)

    api = make_api()
    _register_error_handlers(api)
    from api.resources import (
        audit,
        caller,
        drivers,
        events,
        groups,
        hypervisors,
        images,
        machines,
        nodes,
        packages,
        pxe,
        signin,
        sites,
        tasks,
        templates,
    )

    for module in (images, drivers, templates, tasks, events, hypervisors, machines, nodes, packages, groups, sites,
                   pxe, audit, caller, signin):
        api.add_namespace(module.ns)
    check_declared_roles(resource for resource, *_ in api.resources)
    api.init_app(app)
    register_audit(app)
    from api.bootfiles import bootfiles

    app.register_blueprint(bootfiles)
    from api.ui import register_ui

    register_ui(app)
    from api import metrics

    metrics.install(app, runtime.database)
    outage.install(app)  # 503 for every route, the restx resources' included (see _register_error_handlers)

    @app.errorhandler(HTTPException)
    def outside_the_api(error: HTTPException) -> tuple[dict[str, str], int]:
        """Routing errors (no such URL, wrong method) answer in JSON like everything else."""
        assert error.code is not None  # Flask hands exceptions without a code to no handler
        return {"message": error.description or error.name}, error.code

    from api.fastboot import BootFastPath  # imports prometheus_client: not before api.server set it up

    app.wsgi_app = BootFastPath(app, app.wsgi_app)  # type: ignore[method-assign]  # a boot storm's requests
    if runtime.settings.trusted_proxies:
        # request.remote_addr: the client's address as the trusted proxies saw it, not the last proxy's. Only
        # X-Forwarded-For: the status callbacks bind what a machine claims to it (docs/operations.md).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=runtime.settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=0, x_host=0, x_port=0, x_prefix=0)
    return app


def _sender(runtime: Runtime) -> Dispatcher:
    """The API's dispatcher, without a result backend: the API never reads a task's result (the pipeline keeps
    its outcomes in the database), and Celery's Redis result backend subscribes to the result of every task
    sent, which while the broker is down retries for 20 s and then fails the request."""
    sender = Dispatcher.from_settings(runtime.settings, runtime.database)
    sender.app.conf.update(result_backend="disabled")
    return sender


def _register_error_handlers(api: ErrorHandling) -> None:
    @api.errorhandler(OctoprovError)
    def domain_error(error: OctoprovError) -> tuple[dict[str, Any], int]:
        body: dict[str, Any] = {"message": error.message}
        if isinstance(error, InvalidRequest):
            body = {"message": "Invalid request", "errors": error.errors}
        return body, error.status

    @api.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[dict[str, str], int | None]:
        return {"message": error.description or error.name}, error.code

    @api.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[dict[str, str], int]:
        if is_infrastructure(error):
            # raised on to the app's handler (api.outage): restx would log any answer of 500 or more with
            # its traceback, and an outage would fill the log with them
            raise error
        log.exception("unexpected error")
        return {"message": "internal error; the server log has the details"}, 500
