"""GET /metrics: the API's Prometheus metrics, and what each API process counts per request.

Facts of the database (tasks, step durations, webhook deliveries) are read at scrape time by
``octoprov.metrics.DatabaseCollector``. Request latency, status callbacks and boot answers happen
in whichever API process took the request: with several gunicorn workers each one writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` (``api.server`` sets it up) and every scrape sums
all of them, so the answer does not depend on which worker takes the scrape. Label values are
bounded: the URL rule (never the path as requested), methods, status codes, events, kinds.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from api.auth import Refusal, check_token
from api.runtime import runtime
from octoprov import steps
from octoprov.db import Database
from octoprov.metrics import DatabaseCollector

EXTENSION = "octoprov.metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CALLBACK_EVENTS = frozenset({*steps.EVENTS, "progress"})
UNMATCHED = "(unmatched)"  # the route label of a request no URL rule matched (a 404)

metrics_page = Blueprint("metrics", __name__)


class ApiMetrics:
    """One app's metrics: its in-process counters and the registry a scrape reads."""

    def __init__(self, database: Database):
        folder = os.environ.get(MULTIPROCESS_ENV)
        if folder and values.ValueClass is values.MutexValue:
            # prometheus_client picks its value store when first imported: imported before the variable
            # was set, this process would count in memory and the scrape would read only the files
            raise RuntimeError(f"{MULTIPROCESS_ENV} was set after prometheus_client was imported")
        self.registry = CollectorRegistry()
        own = None if folder else self.registry  # several processes: the files are collected, not the objects
        self.requests = Histogram(
            "octoprov_api_request_duration_seconds", "Time the API took to answer a request, until its response "
            "was ready (a streamed file's transfer not included), by URL rule, method and status code.",
            ["route", "method", "status"], buckets=REQUEST_BUCKETS, registry=own)
        self.callbacks = Counter(
            "octoprov_callbacks", "Status callbacks from machines being provisioned, by event and outcome.",
            ["event", "outcome"], registry=own)
        self.boot_answers = Counter(
            "octoprov_boot_answers", "Boot configurations the API answered machines with, by kind (ipxe script or "
            "grub configuration) and action (install, localboot, menu).", ["kind", "action"], registry=own)
        self._boot_counters: dict[tuple[str, str], Counter] = {}
        if folder:
            MultiProcessCollector(self.registry, path=folder)  # type: ignore[no-untyped-call]  # untyped
        self.registry.register(DatabaseCollector(database))

    def callback(self, event: object, outcome: str) -> None:
        """Count one status callback; an event that is none of the known ones counts as ``invalid``."""
        self.callbacks.labels(event if isinstance(event, str) and event in CALLBACK_EVENTS else "invalid",
                              outcome).inc()

    def boot_answer(self, kind: str, action: str) -> None:
        counter = self._boot_counters.get((kind, action))
        if counter is None:  # a handful of kinds and actions: each looked up once (a boot storm counts thousands)
            counter = self._boot_counters[kind, action] = self.boot_answers.labels(kind, action)
        counter.inc()


def install(app: Flask, database: Database) -> None:
    """Time every request of ``app`` and serve /metrics."""
    app.extensions[EXTENSION] = ApiMetrics(database)
    app.before_request(_start)
    app.after_request(_observe)
    app.register_blueprint(metrics_page)


def api_metrics() -> ApiMetrics:
    found: ApiMetrics = current_app.extensions[EXTENSION]  # install() put it there
    return found


def _start() -> None:
    g.octoprov_request_start = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("octoprov_request_start", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        api_metrics().requests.labels(route, method, str(response.status_code)).observe(
            time.perf_counter() - started)
    return response


@metrics_page.get("/metrics")
def scrape() -> Response | Refusal:
    """The Prometheus text format; with OCTOPROV_METRICS_TOKEN_REQUIRED, for API token holders only."""
    if runtime().settings.metrics_token_required:
        refused = check_token()
        if refused is not None:
            return refused
    return Response(generate_latest(api_metrics().registry), mimetype=CONTENT_TYPE_LATEST)
