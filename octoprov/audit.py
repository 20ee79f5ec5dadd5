"""The audit trail: who did what, with which role, from where, to which object, with which result, when.

Written for every state-changing management request and every sign-in; read by `GET /audit` and its UI page.
Rows are append-only (the database refuses updates, see migration 0007) and carry no secret: neither the
request body nor a token, only names, addresses, routes and ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Select, Table, delete, insert, select, text
from sqlalchemy.orm import Session

from octoprov.models import AuditEvent, utcnow
from octoprov.specs import Timestamp, View

RESULTS = ("ok", "denied", "refused", "failed")


def result_of(status: int) -> str:
    """The outcome an HTTP status means: done, not allowed, refused as invalid, or broken."""
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return "refused" if status < 500 else "failed"


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    result: str
    role: str | None = None
    source: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    status: int | None = None


_ENTRY = insert(cast(Table, AuditEvent.__table__)).inline()  # built once; inline: no RETURNING of the new id


def record(connection: Connection, entry: AuditEntry) -> None:
    """Written at once by a statement, not through the unit of work: every state-changing request writes one, and
    nothing reads the new row back (a statement of its own: see ``Database.alone``)."""
    connection.execute(_ENTRY, {
        "actor": entry.actor[:255], "role": entry.role, "source": (entry.source or "")[:64] or None,
        "action": entry.action[:255], "object_type": entry.object_type,
        "object_id": entry.object_id[:255] if entry.object_id else None, "result": entry.result,
        "status": entry.status})


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # a part of it
    object_type: str | None = None
    object_id: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_query(where: AuditFilter) -> Select[AuditEvent]:
    """Newest first, narrowed by ``where`` (values are bound parameters, never SQL text)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if where.actor:
        query = query.where(AuditEvent.actor == where.actor)
    if where.action:
        query = query.where(AuditEvent.action.contains(where.action, autoescape=True))
    if where.object_type:
        query = query.where(AuditEvent.object_type == where.object_type)
    if where.object_id:
        query = query.where(AuditEvent.object_id == where.object_id)
    if where.result:
        query = query.where(AuditEvent.result == where.result)
    if where.since:
        query = query.where(AuditEvent.at >= where.since)
    if where.until:
        query = query.where(AuditEvent.at < where.until)
    return query


def prune(session: Session, retention_days: int) -> int:
    """Delete the entries older than ``retention_days`` (0: keep everything); how many went."""
    if retention_days <= 0:
        return 0
    if session.get_bind().dialect.name == "postgresql":  # the append-only trigger lets this transaction delete
        session.execute(text("SET LOCAL octoprov.audit_pruning = 'on'"))
    cutoff = utcnow() - timedelta(days=retention_days)
    result = cast(CursorResult[Any], session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)))
    return result.rowcount or 0


class AuditView(View):
    id: int
    at: Timestamp
    actor: str
    role: str | None
    source: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    status: int | None
