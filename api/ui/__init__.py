"""The web UI: server-rendered pages whose scripts call the same REST API as every other client.

The pages carry no data and need no session: the browser keeps the API token in sessionStorage
and sends it as a bearer token, so the API's own authentication, validation and secret masking
are the only ones. A strict Content-Security-Policy (scripts and styles from this app only) keeps
injected markup from reading that token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from octoprov import states
from octoprov.models import MAX_ID
from octoprov.targets import registry
from octoprov.validation.locales import WINDOWS_LANGUAGES
from octoprov.validation.timezones import WINDOWS_TIMEZONES

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
DISK_PURPOSES = ("os", "data", "log", "tempdb", "backup", "other")
LIBRARY = {  # page -> (title, template)
    "images": ("Images", "ui/images.html"),
    "drivers": ("Driver packs", "ui/drivers.html"),
    "templates": ("Templates", "ui/templates.html"),
    "hypervisors": ("Hypervisor nodes", "ui/hypervisors.html"),
    "machines": ("Bare-metal machines", "ui/machines.html"),
    "nodes": ("Installed machines", "ui/nodes.html"),
    "packages": ("Packages", "ui/packages.html"),
    "groups": ("Groups", "ui/groups.html"),
}


@ui.context_processor
def vocabulary() -> dict[str, Any]:
    """What the forms offer as choices; everything else the scripts load from the API."""
    return {
        "targets": registry.labels(),
        # for the scripts: each target's label and the kinds of node it runs on (the registry's own list)
        "target_types": {t.name: {"label": t.label, "nodeKinds": list(t.node_kinds)} for t in registry.all_types()},
        "vm_targets": ",".join(registry.vm_target_names()),
        "node_kinds": [(kind, t.label) for t in registry.all_types() if t.makes_vms for kind in t.node_kinds],
        "statuses": states.ALL,
        "disk_purposes": DISK_PURPOSES,
        "languages": [(tag, tag) for tag in sorted(WINDOWS_LANGUAGES)],
        "timezones": [(zone, zone) for zone in sorted(WINDOWS_TIMEZONES, key=str.lower)],
        "library": LIBRARY,
    }


@ui.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@ui.get("/")
def root() -> BaseResponse:
    return redirect(url_for("ui.dashboard"))


@ui.get("/ui/")
def dashboard() -> str:
    return render_template("ui/dashboard.html", page="dashboard", title="Provisioning")


@ui.get("/ui/signin")
def signin() -> str:
    return render_template("ui/signin.html", page="signin", title="Sign in")


@ui.get("/ui/tasks/new")
def new_task() -> str:
    return render_template("ui/task_new.html", page="task-new", title="New task")


@ui.get(f"/ui/tasks/<int(max={MAX_ID}):task_id>")
def task_detail(task_id: int) -> str:
    return render_template("ui/task_detail.html", page="task-detail", title=f"Task {task_id}", task_id=task_id)


@ui.get("/ui/audit")
def audit_log() -> str:
    return render_template("ui/audit.html", page="audit", title="Audit log", results=("ok", "denied", "refused",
                                                                                      "failed"))


@ui.get("/ui/<any(" + ", ".join(LIBRARY) + "):name>")
def library(name: str) -> str:
    title, template = LIBRARY[name]
    return render_template(template, page=name, title=title)


def register_ui(app: Flask) -> None:
    app.register_blueprint(ui)
