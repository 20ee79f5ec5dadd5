"""Management endpoints need a bearer token; the OpenAPI document and Swagger UI are open."""

from __future__ import annotations

import pytest

from octoprov.models import ApiToken

ENDPOINTS = ["/api/v1/provisioning/images", "/api/v1/provisioning/drivers", "/api/v1/provisioning/templates",
             "/api/v1/provisioning/tasks", "/api/v1/provisioning/hypervisors"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_token_401(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer opv_wrong", "Bearer ", "Basic dXNlcjpwYXNz", "opv_x"])
def test_bad_token_401(anonymous, header):
    response = anonymous.get("/api/v1/provisioning/templates", headers={"Authorization": header})
    assert response.status_code == 401


def test_with_token_200_and_only_hash_stored(anonymous, token, database):
    response = anonymous.get("/api/v1/provisioning/templates", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    with database.session() as session:
        stored = session.query(ApiToken).one()
        assert token not in (stored.token_hash, stored.name)
        assert stored.last_used_at is not None


def test_openapi_document_and_ui_are_open(anonymous):
    spec = anonymous.get("/api/v1/swagger.json")
    assert spec.status_code == 200
    assert spec.json["basePath"] == "/api/v1"
    paths = {"/api/v1" + path: ops for path, ops in spec.json["paths"].items()}
    for path in ENDPOINTS:
        assert path in paths
    for path in ["/api/v1/provisioning/tasks/{task_id}/logs", "/api/v1/provisioning/images/{image_id}",
                 "/api/v1/provisioning/hypervisors/{node_id}/networks",
                 "/api/v1/provisioning/hypervisors/{node_id}/storage", "/api/v1/provisioning/images/upload"]:
        assert path in paths
    assert set(paths["/api/v1/provisioning/tasks/{task_id}"]) >= {"get", "delete"}
    ui = anonymous.get("/api/v1/docs")
    assert ui.status_code == 200 and b"swagger" in ui.data.lower()
