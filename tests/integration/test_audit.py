"""The audit trail: what each state-changing request leaves behind (who, role, where from, what, which object,
outcome), what it never holds (a secret), how `GET /audit` filters it, and that the table only grows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy
from sqlalchemy import text

from octoprov import audit
from octoprov.models import AuditEvent, utcnow
from octoprov.roles import Role
from octoprov.tokens import create_token

SECRET = "Hyp3r-V-secret!"


@pytest.fixture
def tokens(database) -> dict[Role, str]:
    with database.session() as session:
        return {role: create_token(session, f"as-{role}", role) for role in Role}


def as_role(client, tokens, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


def entries(database) -> list[AuditEvent]:
    with database.session() as session:
        rows = session.query(AuditEvent).order_by(AuditEvent.id).all()
        session.expunge_all()
        return rows


def test_each_change_is_recorded_with_caller_role_source_object_and_outcome(anonymous, tokens, database):
    admin, viewer = as_role(anonymous, tokens, Role.ADMIN), as_role(anonymous, tokens, Role.VIEWER)
    created = anonymous.post("/api/v1/provisioning/hypervisors", headers=admin, json={
        "name": "HV01", "kind": "hyperv", "endpoint": "hv01.yourdom.local", "username": "YOURDOM\\svc",
        "password": SECRET}, environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert created.status_code == 201, created.json
    node_id = created.json["id"]
    assert anonymous.get("/api/v1/provisioning/hypervisors", headers=admin).status_code == 200  # a read: not recorded
    assert anonymous.delete(f"/api/v1/provisioning/hypervisors/{node_id}", headers=viewer).status_code == 403
    assert anonymous.post("/api/v1/provisioning/tasks", headers=as_role(anonymous, tokens, Role.OPERATOR),
                          json={"hostname": "bad name!"}).status_code == 400
    assert anonymous.post("/api/v1/provisioning/tasks", json={}).status_code == 401
    assert anonymous.post("/api/v1/provisioning/tasks?dryRun=true", headers=admin, json={}).status_code == 400
    rows = [(e.actor, e.role, e.action, e.object_type, e.object_id, e.result, e.status) for e in entries(database)]
    assert rows == [
        ("token:as-admin", "admin", "POST /provisioning/hypervisors", "hypervisors", str(node_id), "ok", 201),
        ("token:as-viewer", "viewer", "DELETE /provisioning/hypervisors/<int(max=2147483647):node_id>",
         "hypervisors", str(node_id), "denied", 403),
        ("token:as-operator", "operator", "POST /provisioning/tasks", "tasks", None, "refused", 400),
        ("anonymous", None, "POST /provisioning/tasks", "tasks", None, "denied", 401),
    ]
    first = entries(database)[0]
    assert first.source == "192.0.2.44" and first.at is not None


def test_no_secret_reaches_the_trail(anonymous, tokens, database):
    admin = as_role(anonymous, tokens, Role.ADMIN)
    node = anonymous.post("/api/v1/provisioning/hypervisors", headers=admin, json={
        "name": "HV02", "kind": "hyperv", "endpoint": "hv02.yourdom.local", "username": "YOURDOM\\svc",
        "password": SECRET}).json
    anonymous.put(f"/api/v1/provisioning/hypervisors/{node['id']}", headers=admin, json={"password": SECRET + "2"})
    anonymous.post("/api/v1/provisioning/tasks", headers={"Authorization": f"Bearer {tokens[Role.ADMIN]}x"}, json={})
    with database.session() as session:
        dumped = " ".join(str(value) for row in session.execute(text("SELECT * FROM audit_events")) for value in row)
    assert len(entries(database)) == 3
    for secret in (SECRET, tokens[Role.ADMIN]):
        assert secret not in dumped


def test_get_audit_filters_and_is_for_admins(anonymous, tokens, database):
    admin, operator = as_role(anonymous, tokens, Role.ADMIN), as_role(anonymous, tokens, Role.OPERATOR)
    for name in ("HV03", "HV04"):
        anonymous.post("/api/v1/provisioning/hypervisors", headers=admin, json={
            "name": name, "kind": "hyperv", "endpoint": f"{name.lower()}.yourdom.local", "username": "u",
            "password": SECRET})
    anonymous.post("/api/v1/provisioning/hypervisors", headers=operator, json={})
    denied = anonymous.get("/api/v1/audit", headers=operator)
    assert denied.status_code == 403 and "needs the admin role" in denied.json["message"]
    everything = anonymous.get("/api/v1/audit", headers=admin).json
    assert everything["total"] == 3 and everything["items"][0]["actor"] == "token:as-operator"  # newest first
    assert set(everything["items"][0]) >= {"id", "at", "actor", "role", "source", "action", "objectType",
                                          "objectId", "result", "status"}
    by_result = anonymous.get("/api/v1/audit?result=denied", headers=admin).json
    assert [item["actor"] for item in by_result["items"]] == ["token:as-operator"]
    by_actor = anonymous.get("/api/v1/audit?actor=token:as-admin&perPage=1", headers=admin).json
    assert by_actor["total"] == 2 and len(by_actor["items"]) == 1
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert anonymous.get("/api/v1/audit", query_string={"since": future}, headers=admin).json["total"] == 0
    wrong = anonymous.get("/api/v1/audit?result=maybe&since=yesterday", headers=admin)
    assert wrong.status_code == 400 and {"result", "since"} & set(wrong.json["errors"])


def test_the_trail_only_grows_but_for_the_retention_job(database):
    with database.session() as session:
        audit.record(session.connection(), audit.AuditEntry(actor="token:old", action="POST /x", result="ok"))
        audit.record(session.connection(), audit.AuditEntry(actor="token:new", action="POST /x", result="ok"))
    with database.session() as session:
        old = session.query(AuditEvent).filter_by(actor="token:old").one()
        session.execute(text("INSERT INTO audit_events (at, actor, action, result) VALUES (:at, 'token:ancient', "
                             "'POST /x', 'ok')"), {"at": utcnow() - timedelta(days=500)})
        old_id = old.id
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), database.session() as session:
        session.execute(text("UPDATE audit_events SET actor = 'token:someone-else' WHERE id = :id"),
                        {"id": old_id})
    if database.engine.dialect.name == "postgresql":
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), database.session() as session:
            session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": old_id})
    with database.session() as session:
        assert audit.prune(session, retention_days=0) == 0
        assert audit.prune(session, retention_days=400) == 1
    assert sorted(e.actor for e in entries(database)) == ["token:new", "token:old"]
