"""Packages through the API (on SQLite and PostgreSQL) and their parameters checked against the
package's schema: what is stored, each bad field named, defaults filled in, deletes refused in use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import update

from octoprov.errors import InvalidRequest
from octoprov.models import Task
from octoprov.packages import validate_parameters
from tests.support.library import PACKAGES, SQL_SCHEMA, created, linux_package, windows_package


def create(client, body: dict) -> dict:
    return created(client, "packages", body)


def test_create_get_update_delete(client):
    package = create(client, windows_package())
    assert package["name"] == "SQL Server 2022"
    assert package["osType"] == "windows"
    assert package["idempotent"] is True
    assert package["timeoutSeconds"] == 3600
    assert package["parametersSchema"] == SQL_SCHEMA
    assert client.get(f"{PACKAGES}/{package['id']}").json == package

    changed = windows_package("SQL Server 2022 CU", idempotent=False)
    del changed["timeoutSeconds"]
    response = client.put(f"{PACKAGES}/{package['id']}", json=changed)
    assert response.status_code == 200, response.json
    assert response.json["name"] == "SQL Server 2022 CU"
    assert response.json["timeoutSeconds"] == 1800  # the default again: PUT replaces
    assert response.json["createdAt"] == package["createdAt"]

    assert client.delete(f"{PACKAGES}/{package['id']}").status_code == 204
    assert client.get(f"{PACKAGES}/{package['id']}").status_code == 404


def test_a_package_without_parameters_gets_an_empty_schema(client):
    package = create(client, linux_package())
    assert package["parametersSchema"] == {"type": "object", "properties": {}, "required": []}
    assert package["idempotent"] is False and package["timeoutSeconds"] == 1800


def test_list_filters_by_os_type_and_pages(client):
    ids = [create(client, windows_package(f"win-{n}"))["id"] for n in range(3)]
    linux = create(client, linux_package())["id"]
    page = client.get(f"{PACKAGES}?osType=windows&perPage=2").json
    assert (page["total"], [p["id"] for p in page["items"]]) == (3, ids[:2])
    assert [p["id"] for p in client.get(f"{PACKAGES}?osType=windows&page=2&perPage=2").json["items"]] == ids[2:]
    assert [p["id"] for p in client.get(f"{PACKAGES}?osType=linux").json["items"]] == [linux]
    assert client.get(PACKAGES).json["total"] == 4
    response = client.get(f"{PACKAGES}?osType=macos")
    assert response.status_code == 400 and set(response.json["errors"]) == {"osType"}


def test_names_are_unique(client):
    first = create(client, windows_package("One"))
    create(client, linux_package("Two"))
    assert client.post(PACKAGES, json=linux_package("One")).status_code == 409
    response = client.put(f"{PACKAGES}/{first['id']}", json=windows_package("Two"))
    assert response.status_code == 409
    assert "Two" in response.json["message"]
    assert client.get(f"{PACKAGES}/{first['id']}").json["name"] == "One"  # unchanged after the refusal


def _with_schema(properties: dict | None = None, required: list | None = None, **schema) -> dict:
    body = windows_package()
    body["parametersSchema"] = {"type": "object", "properties": properties or {}, "required": required or [],
                                **schema}
    return body


S = "parametersSchema"
INVALID = [
    (windows_package(osType="macos"), "osType"),
    (windows_package(script=""), "script"),
    (windows_package(script="echo \x00"), "script"),  # PostgreSQL stores no NUL, in text or JSONB
    (windows_package(description="a\x00b"), "description"),
    (windows_package(name="  "), "name"),
    (windows_package(timeoutSeconds=0), "timeoutSeconds"),
    (windows_package(timeoutS=60), "timeoutS"),
    (windows_package(idempotent="yes"), "idempotent"),
    (_with_schema(type="array"), f"{S}.type"),
    (_with_schema(additionalProperties=True), f"{S}.additionalProperties"),
    (_with_schema({"1st": {"type": "string"}}), f"{S}.properties.1st"),
    (_with_schema({"instance-name": {"type": "string"}}), f"{S}.properties.instance-name"),
    (_with_schema({"x" * 65: {"type": "string"}}), f"{S}.properties.{'x' * 65}"),
    (_with_schema({"Input": {"type": "string"}}), f"{S}.properties.Input"),  # $input in PowerShell
    (_with_schema({"PATH": {"type": "string"}}), f"{S}.properties.PATH"),
    (_with_schema({"LD_PRELOAD": {"type": "string"}}), f"{S}.properties.LD_PRELOAD"),
    (_with_schema({"n": {"type": "number"}}), f"{S}.properties.n.type"),
    (_with_schema({"n": {"type": "string", "format": "ipv4"}}), f"{S}.properties.n.format"),
    (_with_schema({"n": {"type": "string", "pattern": "(unclosed"}}), f"{S}.properties.n.pattern"),
    (_with_schema({"n": {"type": "string", "pattern": "a\x00"}}), f"{S}.properties.n.pattern"),
    (_with_schema({"n": {"type": "string", "description": "a\x00"}}), f"{S}.properties.n.description"),
    (_with_schema({"n": {"type": "string", "enum": ["a\x00"]}}), f"{S}.properties.n.enum[0]"),
    (_with_schema({"n": {"type": "integer", "pattern": "^1$"}}), f"{S}.properties.n.pattern"),
    (_with_schema({"n": {"type": "string", "minimum": 1}}), f"{S}.properties.n.minimum"),
    (_with_schema({"n": {"type": "integer", "minimum": 5, "maximum": 4}}), f"{S}.properties.n.maximum"),
    (_with_schema({"n": {"type": "integer", "enum": [1, "2"]}}), f"{S}.properties.n.enum[1]"),
    (_with_schema({"n": {"type": "integer", "enum": [1, True]}}), f"{S}.properties.n.enum[1]"),
    (_with_schema({"n": {"type": "string", "enum": []}}), f"{S}.properties.n.enum"),
    (_with_schema({"n": {"type": "string", "pattern": "^a+$", "default": "b"}}), f"{S}.properties.n.default"),
    (_with_schema({"n": {"type": "boolean", "default": "true"}}), f"{S}.properties.n.default"),
    (_with_schema({"n": {"type": "integer", "maximum": 9, "default": 10}}), f"{S}.properties.n.default"),
    (_with_schema({"n": {"type": "string"}}, ["m"]), f"{S}.required[0]"),
    (_with_schema({"n": {"type": "string"}}, ["n", "n"]), f"{S}.required[1]"),
    (_with_schema({f"p{i}": {"type": "string"} for i in range(65)}), f"{S}.properties"),
]


@pytest.mark.parametrize(("body", "field"), INVALID, ids=[field for _, field in INVALID])
def test_each_invalid_field_gets_a_400_naming_it(client, body, field):
    response = client.post(PACKAGES, json=body)
    assert response.status_code == 400, response.json
    assert set(response.json["errors"]) == {field}, response.json


def test_unknown_ids_are_404_and_bad_bodies_400(client):
    assert client.get(f"{PACKAGES}/99").status_code == 404
    assert client.put(f"{PACKAGES}/99", json=linux_package()).status_code == 404
    assert client.delete(f"{PACKAGES}/99").status_code == 404
    assert client.get(f"{PACKAGES}/{2**31}").status_code == 404  # beyond the id column: routed nowhere
    response = client.post(PACKAGES, data="[", content_type="application/json")
    assert response.status_code == 400 and set(response.json["errors"]) == {"body"}


def _stored_task(database, package_id: int, status: str = "pending") -> int:
    """A task whose stored configuration runs the package, as task creation would leave it."""
    with database.session() as session:
        task = Task(hostname="SQL-01", target_type="fake", status=status,
                    config={"postInstall": {"runPackages": [{"packageId": package_id, "parameters": {}}]}})
        session.add(task)
        session.flush()
        return task.id


def test_a_package_an_open_task_runs_cannot_be_deleted_nor_change_os(client, database):
    package = create(client, windows_package())
    unused = create(client, linux_package())
    task_id = _stored_task(database, package["id"])
    _stored_task(database, unused["id"], status="completed")

    response = client.delete(f"{PACKAGES}/{package['id']}")
    assert response.status_code == 409
    assert f"task {task_id}" in response.json["message"]
    response = client.put(f"{PACKAGES}/{package['id']}", json=windows_package(osType="linux"))
    assert response.status_code == 400 and set(response.json["errors"]) == {"osType"}
    assert client.put(f"{PACKAGES}/{package['id']}", json=windows_package(idempotent=False)).status_code == 200

    assert client.delete(f"{PACKAGES}/{unused['id']}").status_code == 204  # only finished tasks used it
    with database.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(status="failed"))
    assert client.delete(f"{PACKAGES}/{package['id']}").status_code == 204


# -- validate_parameters -----------------------------------------------------------------------------

PACKAGE = SimpleNamespace(name="SQL Server 2022", parameters_schema=SQL_SCHEMA)


def problems(parameters: object, prefix: str = "parameters") -> dict[str, str]:
    with pytest.raises(InvalidRequest) as raised:
        validate_parameters(PACKAGE, parameters, prefix)
    return raised.value.errors


def test_defaults_are_filled_in_and_given_values_kept():
    assert validate_parameters(PACKAGE, {"instanceName": "SQL01"}) == {
        "instanceName": "SQL01", "port": 1433, "edition": "Developer", "mixedAuth": False}
    given = {"instanceName": "SQL01", "port": 50000, "edition": "Standard", "mixedAuth": True}
    assert validate_parameters(PACKAGE, given) == given


def test_a_package_without_a_schema_takes_no_parameters():
    bare = SimpleNamespace(name="nginx", parameters_schema={"type": "object", "properties": {}, "required": []})
    assert validate_parameters(bare, {}) == {}
    assert set(problems_of(bare, {"x": 1})) == {"parameters.x"}


def problems_of(package, parameters) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as raised:
        validate_parameters(package, parameters)
    return raised.value.errors


@pytest.mark.parametrize(("parameters", "path", "words"), [
    ({}, "instanceName", "required"),
    ({"instanceName": "sql01"}, "instanceName", "must match"),
    ({"instanceName": 7}, "instanceName", "string"),
    ({"instanceName": "A" * 5000}, "instanceName", "at most"),
    ({"instanceName": "SQL01", "port": 80}, "port", "between 1024 and 65535"),
    ({"instanceName": "SQL01", "port": "1433"}, "port", "whole number"),
    ({"instanceName": "SQL01", "port": True}, "port", "whole number"),
    ({"instanceName": "SQL01", "port": 2**64}, "port", "64 bits"),
    ({"instanceName": "SQL01", "port": 1433.0}, "port", "whole number"),
    ({"instanceName": "SQL01", "edition": "Enterprise"}, "edition", "one of Developer, Standard"),
    ({"instanceName": "SQL01", "mixedAuth": 1}, "mixedAuth", "true or false"),
    ({"instanceName": "SQL01", "collation": "x"}, "collation", "no such parameter"),
])
def test_each_bad_parameter_is_named_under_the_prefix(parameters, path, words):
    errors = problems(parameters, "postInstall.runPackages[2].parameters")
    assert list(errors) == [f"postInstall.runPackages[2].parameters.{path}"]
    assert words in errors[f"postInstall.runPackages[2].parameters.{path}"]


def test_every_problem_is_reported_at_once_and_a_non_object_is_refused():
    assert set(problems({"port": 1, "mixedAuth": "no"})) == {
        "parameters.instanceName", "parameters.port", "parameters.mixedAuth"}
    assert problems(["instanceName"]) == {"parameters": "must be a JSON object"}


def test_patterns_search_like_json_schema():
    loose = SimpleNamespace(name="p", parameters_schema={
        "type": "object", "properties": {"v": {"type": "string", "pattern": "[0-9]"}}, "required": []})
    assert validate_parameters(loose, {"v": "abc1def"}) == {"v": "abc1def"}
    assert set(problems_of(loose, {"v": "abc"})) == {"parameters.v"}
