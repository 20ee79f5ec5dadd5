"""Writing the audit trail of the management API: one entry per state-changing request, after its answer.

``api.auth.authorize`` marks the requests it handled; here each of them that is not a read (GET, HEAD,
OPTIONS) or a dry run becomes an entry with the caller, their address, the route, the object's id (from
the URL, or from the answer for a creation) and the outcome. Never the body: it may hold secrets.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from api.auth import SAFE_METHODS
from api.outage import UNREACHABLE, reason, unreachable
from api.runtime import runtime
from octoprov import audit

log = logging.getLogger(__name__)



def register_audit(app: Flask) -> None:
    app.after_request(_record)


def _record(response: Response) -> Response:
    if not g.get("audited") or request.method in SAFE_METHODS or request.args.get("dryRun") in ("true", "1"):
        return response
    caller = g.get("caller")
    object_type, object_id = _object(response)
    entry = audit.AuditEntry(
        actor=caller.actor if caller else "anonymous", role=caller.role.value if caller else None,
        source=request.remote_addr, action=f"{request.method} {_route()}", object_type=object_type,
        object_id=object_id, result=audit.result_of(response.status_code), status=response.status_code)
    if g.get(UNREACHABLE) == "database":  # the request failed on it just now: a second wait for it helps no one
        log.warning("the audit entry for %s (%s) is not written: the database is unreachable", entry.action,
                    response.status_code)
        return response
    try:
        with runtime().database.alone() as connection:  # one statement: no transaction around it
            audit.record(connection, entry)
    except Exception as exc:  # an answer already given stays given; the failure goes to the server log
        if unreachable(exc) is None:
            log.exception("could not write the audit entry for %s", entry.action)
        else:  # one line, as api.outage logs the outage itself
            log.warning("the audit entry for %s (%s) is not written: the database is unreachable (%s)",
                        entry.action, response.status_code, reason(exc))
    return response


def _route() -> str:
    """The route's pattern below /api/v1 (``/provisioning/tasks/<int:task_id>``), not the raw path."""
    rule = request.url_rule.rule if request.url_rule else request.path
    return rule.removeprefix("/api/v1")


def _object(response: Response) -> tuple[str | None, str | None]:
    """What the request acted on: the resource kind from the route and the id from the URL or the answer."""
    route = _route().strip("/").split("/")
    kind = route[1] if route[0] == "provisioning" and len(route) > 1 else route[0] or None
    ids = [str(value) for name, value in (request.view_args or {}).items() if name.endswith("_id")]
    if ids:
        return kind, "/".join(ids)
    if response.status_code == 201 and response.is_json:
        created = response.get_json(silent=True)
        if isinstance(created, dict) and created.get("id") is not None:
            return kind, str(created["id"])
    return kind, None
