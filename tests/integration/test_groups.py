"""Groups through the API (on SQLite and PostgreSQL): CRUD, members added once however often asked,
memberships gone with the group or the node, deletes refused while a task is to use the group."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from octoprov import groups
from octoprov.errors import NotFound
from octoprov.models import GroupMember, Task
from tests.support.library import API, created

GROUPS = f"{API}/groups"


def create(client, name: str, description: str | None = None) -> dict:
    return created(client, "groups", {"name": name, "description": description})


def hypervisor(client, name: str = "LAB") -> int:
    return created(client, "hypervisors", {"name": name, "kind": "fake", "endpoint": "fake://lab"})["id"]


def members(client, group_id: int, query: str = "") -> dict:
    response = client.get(f"{GROUPS}/{group_id}/members{query}")
    assert response.status_code == 200, response.json
    return response.json


def test_create_get_update_list_delete(client):
    group = create(client, "  SQL Servers ", "Database hosts")
    assert (group["name"], group["description"]) == ("SQL Servers", "Database hosts")
    assert client.get(f"{GROUPS}/{group['id']}").json == group
    other = create(client, "Web")
    response = client.put(f"{GROUPS}/{group['id']}", json={"name": "SQL"})
    assert response.status_code == 200, response.json
    assert (response.json["name"], response.json["description"]) == ("SQL", None)
    page = client.get(f"{GROUPS}?perPage=1&page=2").json
    assert (page["total"], [g["id"] for g in page["items"]]) == (2, [other["id"]])
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204
    assert client.get(f"{GROUPS}/{group['id']}").status_code == 404
    assert [g["id"] for g in client.get(GROUPS).json["items"]] == [other["id"]]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "a\tb"}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": 5}, "name"),
    ({"name": "ok", "description": "d" * 4001}, "description"),
    ({"name": "ok", "description": "a\x00b"}, "description"),  # PostgreSQL stores no NUL
    ({"name": "ok", "members": [1]}, "members"),
])
def test_each_invalid_field_gets_a_400_naming_it(client, body, field):
    response = client.post(GROUPS, json=body)
    assert response.status_code == 400, response.json
    assert set(response.json["errors"]) == {field}


def test_names_are_unique(client):
    first = create(client, "Web")
    create(client, "SQL")
    assert client.post(GROUPS, json={"name": "Web"}).status_code == 409
    assert client.put(f"{GROUPS}/{first['id']}", json={"name": "SQL"}).status_code == 409
    assert client.put(f"{GROUPS}/{first['id']}", json={"name": "Web", "description": "same name"}).status_code == 200


def test_members_are_added_once_listed_and_removed(client):
    group = create(client, "SQL Servers")
    first, second = hypervisor(client, "HV1"), hypervisor(client, "HV2")
    for node in (first, second, first):
        assert client.put(f"{GROUPS}/{group['id']}/members/{node}").status_code == 204
    listed = members(client, group["id"])
    assert listed["total"] == 2
    assert [(m["nodeId"], m["name"], m["role"]) for m in listed["items"]] == [
        (first, "HV1", "hypervisor"), (second, "HV2", "hypervisor")]
    assert [m["nodeId"] for m in members(client, group["id"], "?page=2&perPage=1")["items"]] == [second]

    assert client.delete(f"{GROUPS}/{group['id']}/members/{first}").status_code == 204
    assert [m["nodeId"] for m in members(client, group["id"])["items"]] == [second]
    assert client.delete(f"{GROUPS}/{group['id']}/members/{first}").status_code == 404


def test_unknown_groups_and_nodes_are_404(client):
    group = create(client, "Web")
    node = hypervisor(client)
    assert client.get(f"{GROUPS}/99/members").status_code == 404
    assert client.put(f"{GROUPS}/99/members/{node}").status_code == 404
    response = client.put(f"{GROUPS}/{group['id']}/members/99")
    assert response.status_code == 404 and "node" in response.json["message"]
    assert client.put(f"{GROUPS}/99", json={"name": "x"}).status_code == 404
    assert client.delete(f"{GROUPS}/99").status_code == 404


def _member_rows(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(GroupMember))


def test_memberships_go_with_the_group_and_with_the_node(client, database):
    kept, dropped = create(client, "Kept"), create(client, "Dropped")
    node, removed = hypervisor(client, "HV1"), hypervisor(client, "HV2")
    for group in (kept, dropped):
        for member in (node, removed):
            client.put(f"{GROUPS}/{group['id']}/members/{member}")
    assert _member_rows(database) == 4
    assert client.delete(f"{GROUPS}/{dropped['id']}").status_code == 204
    assert _member_rows(database) == 2
    assert client.delete(f"{API}/hypervisors/{removed}").status_code == 204
    assert [m["nodeId"] for m in members(client, kept["id"])["items"]] == [node]


def test_a_group_an_open_task_joins_cannot_be_deleted(client, database):
    group, other = create(client, "SQL"), create(client, "Web")
    with database.session() as session:
        task = Task(hostname="SQL-01", target_type="fake", status="booting",
                    config={"postInstall": {"addToGroups": [other["id"] + 10, group["id"]]}})
        session.add(task)
        session.flush()
        task_id = task.id
    response = client.delete(f"{GROUPS}/{group['id']}")
    assert response.status_code == 409 and f"task {task_id}" in response.json["message"]
    assert client.delete(f"{GROUPS}/{other['id']}").status_code == 204
    with database.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(status="cancelled"))
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204


def test_add_member_is_idempotent_and_answers_the_group(client, database):
    sql, web = create(client, "SQL"), create(client, "Web")
    node = hypervisor(client)
    with database.session() as session:
        assert groups.add_member(session, sql["id"], node).name == "SQL"
        groups.add_member(session, sql["id"], node)
        groups.add_member(session, web["id"], node)
    with database.session() as session:
        assert [g.name for g in groups.groups_of(session, node)] == ["SQL", "Web"]
        with pytest.raises(NotFound):
            groups.add_member(session, sql["id"], node + 1)
    assert _member_rows(database) == 2
