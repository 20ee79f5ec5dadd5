"""Roles: every management operation of the OpenAPI document declares the role it needs, the declaration is
the policy (viewer reads, operator also runs tasks, admin everything), and each role is let through or
refused with 403 naming the role, operation by operation, against the real app and database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main as cli
from octoprov.models import ApiToken
from octoprov.roles import Role
from octoprov.tokens import create_token

METHODS = ("get", "post", "put", "patch", "delete")
OPERATOR_WRITES = {("post", "/provisioning/tasks"), ("delete", "/provisioning/tasks/{task_id}"),
                   ("post", "/provisioning/tasks/{task_id}/retry"),
                   ("post", "/provisioning/sites/{site}/served")}  # an edge reporting the boots it served
OPERATOR_READS = {("get", "/provisioning/sites/{site}/answers")}  # boot answers carry the tasks' callback tokens
ADMIN_READS = {("get", "/audit")}  # who did what from where: not for everyone who may read
OPEN_PATHS = ("/provisioning/pxe", "/session")  # machines booting; the sign-in itself (it answers 401 when refused)


def policy(method: str, path: str) -> Role:
    """The role an operation should need, written out independently of the code's declarations."""
    if (method, path) in ADMIN_READS:
        return Role.ADMIN
    if (method, path) in OPERATOR_READS:
        return Role.OPERATOR
    if method == "get":
        return Role.VIEWER
    return Role.OPERATOR if (method, path) in OPERATOR_WRITES else Role.ADMIN


@pytest.fixture
def tokens(database) -> dict[Role, str]:
    with database.session() as session:
        return {role: create_token(session, f"as-{role}", role) for role in Role}


def management_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation that answers 401 without a caller, but for the open ones."""
    return [(method, path, operation) for path, item in spec["paths"].items() for method, operation in item.items()
            if method in METHODS and "401" in operation.get("responses", {}) and not path.startswith(OPEN_PATHS)]


def concrete(path: str) -> str:
    """The path with every {parameter} an id that exists nowhere: what matters here is who is let in."""
    return "/api/v1" + re.sub(r"\{[^}]+\}", "2147483000", path)


def test_every_management_operation_declares_the_role_of_the_policy(anonymous):
    spec = anonymous.get("/api/v1/swagger.json").json
    operations = management_operations(spec)
    assert len(operations) >= 40, len(operations)  # the whole API, not a part of it
    for method, path, operation in operations:
        declared = operation.get("x-octoprov-role")
        assert declared == policy(method, path).value, f"{method.upper()} {path}: declares {declared}"
        assert "403" in operation["responses"], f"{method.upper()} {path}: 403 not documented"
    open_operations = [(p, m) for p, item in spec["paths"].items() for m, op in item.items()
                       if m in METHODS and "x-octoprov-role" not in op]
    assert all(path.startswith(OPEN_PATHS) for path, _ in open_operations), open_operations


def test_each_role_against_each_operation(anonymous, tokens):
    spec = anonymous.get("/api/v1/swagger.json").json
    for method, path, operation in management_operations(spec):
        needed = Role(operation["x-octoprov-role"])
        for role, token in tokens.items():
            response = anonymous.open(concrete(path), method=method.upper(), json={} if method != "get" else None,
                                      headers={"Authorization": f"Bearer {token}"})
            where = f"{method.upper()} {path} as {role}: {response.status_code} {response.get_data(as_text=True)[:200]}"
            if role.allows(needed):
                assert response.status_code not in (401, 403) and response.status_code < 500, where
            else:
                assert response.status_code == 403, where
                message = response.json["message"]
                assert f"needs the {needed} role" in message and f"token:as-{role} has the {role} role" in message


def test_tokens_are_admins_unless_created_with_a_role(tmp_path, database, monkeypatch):
    monkeypatch.setenv("OCTOPROV_DATABASE_URL", database.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("OCTOPROV_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    viewer = runner.invoke(cli, ["token", "create", "dashboard", "--role", "viewer"])
    plain = runner.invoke(cli, ["token", "create", "first"])
    wrong = runner.invoke(cli, ["token", "create", "x", "--role", "root"])
    assert viewer.exit_code == 0 and plain.exit_code == 0, viewer.output + plain.output
    assert wrong.exit_code == 2 and "'root' is not one of 'viewer', 'operator', 'admin'" in wrong.output
    with database.session() as session:
        roles = {token.name: token.role for token in session.query(ApiToken)}
    assert roles == {"dashboard": "viewer", "first": "admin"}


def test_role_names_are_parsed_strictly():
    assert Role.parse(" Operator ") is Role.OPERATOR
    with pytest.raises(ValueError, match="unknown role 'root': one of viewer, operator, admin"):
        Role.parse("root")
    assert Role.ADMIN.allows(Role.OPERATOR) and not Role.VIEWER.allows(Role.OPERATOR)


def test_the_caller_learns_its_role(anonymous, tokens):
    for role, token in tokens.items():
        answer = anonymous.get("/api/v1/caller", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json == {"actor": f"token:as-{role}", "role": role.value}
    assert anonymous.get("/api/v1/caller").status_code == 401
