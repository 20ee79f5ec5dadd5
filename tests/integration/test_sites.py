"""Sites: the resource, what belongs to one, the queues its tasks run on, and what its edge fetches and reports."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text, update

from octoprov import sites, tasks
from octoprov.models import Task, TaskLog, TaskStep
from octoprov.sites import SiteLookup
from octoprov.targets import registry
from tests.support.library import tiny_linux_image
from workers.app import make_celery
from workers.dispatch import Dispatcher

SITES = "/api/v1/provisioning/sites"
MAC = "52:54:00:5e:00:01"
EDGE = "http://198.51.100.2:8081"


def _site(client, name="branch1", boot_url=EDGE) -> dict:
    response = client.post(SITES, json={"name": name, "description": "Branch", "bootUrl": boot_url})
    assert response.status_code == 201, response.json
    return response.json


def _machine(client, site_id, mac=MAC) -> dict:
    response = client.post("/api/v1/provisioning/machines", json={"name": f"m-{mac[-2:]}", "macAddresses": [mac],
                                                                   "siteId": site_id})
    assert response.status_code == 201, response.json
    return response.json


def _task(client, image_id, mac=MAC, **extra) -> dict:
    response = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "branch-01", "targetType": "baremetal", "macAddress": mac, "os": {"imageId": image_id}, **extra})
    assert response.status_code == 201, response.json
    return response.json


def test_sites_are_listed_read_updated_and_deleted_by_id_or_name(client):
    site = _site(client)
    assert client.get(f"{SITES}/branch1").json == site == client.get(f"{SITES}/{site['id']}").json
    assert client.get(SITES).json["items"] == [site]
    moved = client.put(f"{SITES}/branch1", json={"name": "branch2", "bootUrl": "https://edge.example:8443/"})
    assert moved.status_code == 200 and moved.json["bootUrl"] == "https://edge.example:8443"
    assert client.get(f"{SITES}/branch1").status_code == 404
    assert client.delete(f"{SITES}/branch2").status_code == 204
    assert client.get(SITES).json["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Branch1", "bootUrl": EDGE}, "name"),
    ({"name": "1branch", "bootUrl": EDGE}, "name"),
    ({"name": "branch-", "bootUrl": EDGE}, "name"),
    ({"name": "b" * 64, "bootUrl": EDGE}, "name"),
    ({"name": "branch1", "bootUrl": "ftp://198.51.100.2"}, "bootUrl"),
    ({"name": "branch1", "bootUrl": "http://user:pw@198.51.100.2"}, "bootUrl"),
    ({"name": "branch1", "bootUrl": "http://198.51.100.2/a b"}, "bootUrl"),
    ({"name": "branch1", "bootUrl": "http://198.51.100.2/x||shell"}, "bootUrl"),
    ({"name": "branch1"}, "bootUrl"),
    ({"name": "branch1", "bootUrl": EDGE, "extra": 1}, "extra"),
])
def test_bad_sites_are_refused_naming_the_field(client, body, field):
    response = client.post(SITES, json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_a_site_in_use_is_neither_deleted_nor_renamed_and_names_are_unique(client):
    site = _site(client)
    assert client.post(SITES, json={"name": "branch1", "bootUrl": EDGE}).status_code == 409
    _machine(client, site["id"])
    refused = client.delete(f"{SITES}/branch1")
    assert refused.status_code == 409 and "in use" in refused.json["message"]
    assert client.put(f"{SITES}/branch1", json={"name": "other", "bootUrl": EDGE}).status_code == 409
    assert client.put(f"{SITES}/branch1", json={"name": "branch1", "bootUrl": EDGE + "/pxe"}).status_code == 200
    assert client.get(f"{SITES}/nosuch").status_code == 404


def test_nodes_and_machines_name_an_existing_site(client):
    node = {"name": "kvm-b1", "kind": "kvm", "endpoint": "qemu:///system", "siteId": 999}
    assert "siteId" in client.post("/api/v1/provisioning/hypervisors", json=node).json["errors"]
    site = _site(client)
    created = client.post("/api/v1/provisioning/hypervisors", json={**node, "siteId": site["id"]})
    assert created.status_code == 201 and created.json["siteId"] == site["id"]
    refused = client.post("/api/v1/provisioning/machines", json={"name": "m", "macAddresses": [MAC], "siteId": 0})
    assert refused.status_code == 400 and "siteId" in refused.json["errors"]


def test_a_task_takes_its_machines_site_or_the_one_it_names(client, settings):
    image = tiny_linux_image(client, settings.effective_images_dir)
    site, other = _site(client), _site(client, "branch2")
    _machine(client, site["id"])
    assert _task(client, image)["siteId"] == site["id"]
    conflict = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "x", "targetType": "baremetal", "macAddress": MAC, "os": {"imageId": image},
        "siteId": other["id"]})
    assert conflict.status_code == 400 and "siteId" in conflict.json["errors"]
    unknown = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "x", "targetType": "baremetal", "macAddress": "52:54:00:5e:00:09", "os": {"imageId": image},
        "siteId": 12345})
    assert unknown.status_code == 400 and "siteId" in unknown.json["errors"]
    unregistered = _task(client, image, mac="52:54:00:5e:00:02", siteId=other["id"])
    assert unregistered["siteId"] == other["id"]
    assert _task(client, image, mac="52:54:00:5e:00:03")["siteId"] is None


def test_the_queue_is_chosen_by_the_tasks_site(client, settings, database):
    assert registry.queue_for("kvm", "branch1") == "kvm@branch1"
    assert registry.queue_for("fake", "branch1") == "default@branch1"
    assert registry.queue_for("kvm") == "kvm" and registry.queue_for("nosuch") == "default"
    assert registry.site_queues("b", ("kvm", "default")) == ("kvm@b", "default@b")
    image = tiny_linux_image(client, settings.effective_images_dir)
    _machine(client, _site(client)["id"])
    at_site, central = _task(client, image), _task(client, image, mac="52:54:00:5e:00:04")
    broker = settings.data_dir / "queues.db"  # the embedded broker: its queue table is the truth
    app = make_celery(settings.model_copy(update={"broker_url": f"sqla+sqlite:///{broker}"}))
    dispatcher = Dispatcher(app, SiteLookup(database))
    assert dispatcher.run_steps(at_site["id"], "baremetal", ["register_machine"])
    assert dispatcher.run_steps(central["id"], "baremetal", ["register_machine"])
    dispatcher.rollback(at_site["id"], "baremetal")
    engine = create_engine(f"sqlite:///{broker}")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT q.name, count(m.id) FROM kombu_queue q JOIN kombu_message m "
                                       "ON m.queue_id = q.id GROUP BY q.name")).all()
    counts = {name: count for name, count in rows}
    engine.dispose()
    assert counts == {"baremetal@branch1": 2, "baremetal": 1}


def test_a_submission_tells_the_dispatcher_its_tasks_site(client, settings, runtime, monkeypatch):
    """The new task's first steps go to its site's queue without the dispatcher reading the site back."""
    image = tiny_linux_image(client, settings.effective_images_dir)
    _machine(client, _site(client)["id"])
    broker = settings.data_dir / "queues.db"
    dispatcher = Dispatcher(make_celery(settings.model_copy(update={"broker_url": f"sqla+sqlite:///{broker}"})),
                            SiteLookup(runtime.database))

    def read(*_args):
        raise AssertionError("the site of a new task was read back")

    monkeypatch.setattr(sites, "task_site_name", read)
    body = {"hostname": "branch-01", "targetType": "baremetal", "macAddress": MAC, "os": {"imageId": image}}
    view = tasks.submit(runtime, dispatcher, body).view
    assert dispatcher.sites is not None and dispatcher.sites.of_task(view["id"]) == "branch1"
    engine = create_engine(f"sqlite:///{broker}")
    with engine.connect() as connection:
        queues = connection.execute(text("SELECT q.name FROM kombu_queue q JOIN kombu_message m "
                                         "ON m.queue_id = q.id")).scalars().all()
    engine.dispose()
    assert queues == ["baremetal@branch1"]


def test_the_edge_gets_its_sites_prepared_answers_and_reports_its_boots(client, database, settings, anonymous):
    image = tiny_linux_image(client, settings.effective_images_dir, "console=ttyS0")
    _machine(client, _site(client)["id"])
    task = _task(client, image)
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name.in_(
            ["register_machine", "render_answers", "register_mac", "power_on"])).values(status="done"))
    answers = client.get(f"{SITES}/branch1/answers")
    assert answers.status_code == 200 and answers.json["bootUrl"] == EDGE
    prepared = answers.json["answers"][MAC]
    assert prepared["taskId"] == task["id"] and prepared["action"] == "install" and prepared["chain"] == "ipxe"
    central = settings.effective_public_url
    assert f"kernel {EDGE}/boot/images/tiny/vmlinuz " in prepared["script"]  # boot files from the edge
    assert f"octoprov.callback={central}/api/v1/provisioning/pxe/status" in prepared["script"]  # callbacks: centre
    assert prepared["document"]["files"]["initrd"] == f"{EDGE}/boot/images/tiny/initrd.gz"
    assert anonymous.get(f"{SITES}/branch1/answers").status_code == 401  # they carry callback tokens
    served = {"mac": MAC, "taskId": task["id"], "action": "install", "at": "2026-01-02T03:04:05+00:00",
              "offline": True}
    assert client.post(f"{SITES}/branch1/served", json={"served": [served]}).json == {"recorded": 1}
    with database.session() as session:
        lines = list(session.scalars(select(TaskLog.message).where(TaskLog.task_id == task["id"],
                                                                   TaskLog.step == "pxe")))
    assert lines == [f"Boot script served to {MAC} by the edge of site branch1 at 2026-01-02T03:04:05+00:00 while "
                     "the centre was unreachable: install"]
    other = _site(client, "branch2")
    assert client.post(f"{SITES}/{other['id']}/served", json={"served": [served]}).json == {"recorded": 0}
    bad = client.post(f"{SITES}/branch1/served", json={"served": [{**served, "mac": "nope", "action": "x"}]})
    assert bad.status_code == 400 and {"served[0].mac", "served[0].action"} <= set(bad.json["errors"]), bad.json
    with database.session() as session:
        assert session.get(Task, task["id"]).site_id is not None
