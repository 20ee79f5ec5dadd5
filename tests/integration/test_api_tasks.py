"""Tasks through the API: the spec's example accepted, each field made invalid gets a 400 naming it."""

from __future__ import annotations

import copy
import threading

import pytest

from tests.support.examples import spec_example, store_post_install

TASKS = "/api/v1/provisioning/tasks"


@pytest.fixture
def refs(client, settings):
    """An image, a Hyper-V node, a package and groups for the example to refer to."""
    (settings.effective_images_dir / "2025-std.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Windows Server 2025 Standard", "osType": "windows", "imagePath": "2025-std.wim"}).json
    node = client.post("/api/v1/provisioning/hypervisors", json={
        "name": "YOURHOST01", "kind": "hyperv", "endpoint": "yourhost01.yourdom.local",
        "username": "YOURDOM\\svc-hyperv", "password": "secret-pass"}).json
    kvm = client.post("/api/v1/provisioning/hypervisors", json={
        "name": "KVM01", "kind": "kvm", "endpoint": "test:///default"}).json
    post_install = store_post_install(
        lambda resource, body: client.post(f"/api/v1/provisioning/{resource}", json=body).json["id"])
    return {"image": image["id"], "node": node["id"], "kvm": kvm["id"], "postInstall": post_install}


def example(refs, variant="dhcp"):
    return spec_example(variant, image_id=refs["image"], node_id=refs["node"], **refs["postInstall"])


@pytest.mark.parametrize("variant", ["dhcp", "static"])
def test_spec_example_is_accepted(client, refs, variant):
    response = client.post(TASKS, json=example(refs, variant))
    assert response.status_code == 201, response.json
    task = response.json
    assert task["status"] == "pending"
    assert task["hostname"] == "SQL-SERVER-01"
    assert task["targetType"] == "hyperv"
    assert task["config"]["vm"]["disks"][1] == {"sizeGb": 200, "purpose": "data", "type": "fixed"}
    assert task["config"]["network"]["mode"] == variant
    assert client.get(f"{TASKS}/{task['id']}").json == task
    logs = client.get(f"{TASKS}/{task['id']}/logs").json
    assert [entry["message"] for entry in logs] == ["Task created"]


def _set(body: dict, path: str, value):
    node = body
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()

# (field path, invalid value, variant[, field named]) — every field of the spec's example, made invalid in turn
INVALID = [
    ("hostname", "SQL-SERVER-01-TOO-LONG", "dhcp"),
    ("hostname", "12345", "dhcp"),
    ("hostname", "bad_name!", "dhcp"),
    ("targetType", "xen", "dhcp"),
    ("hypervisorNodeId", 99999, "dhcp"),
    ("hypervisorNodeId", "5", "dhcp"),
    ("vm.cpu", 0, "dhcp"),
    ("vm.cpu", "4", "dhcp"),
    ("vm.memoryGb", 0, "dhcp"),
    ("vm.memoryGb", 100000, "dhcp"),
    ("vm.generation", 3, "dhcp"),
    ("vm.secureboot", "yes", "dhcp"),
    ("vm.disks", [], "dhcp"),
    ("vm.disks[0].sizeGb", 0, "dhcp"),
    ("vm.disks[1].purpose", "os", "dhcp", "vm.disks"),  # a second os disk: the list is what is wrong
    ("vm.disks[2].purpose", "swap-space", "dhcp"),
    ("vm.disks[3].type", "thin", "dhcp"),
    ("vm.network.vswitch", "", "dhcp"),
    ("vm.network.vlan", 5000, "dhcp"),
    ("vm.storagePath", "D:\\bad\x07path", "dhcp"),
    ("os.imageId", 99999, "dhcp"),
    ("os.language", "xx-XX", "dhcp"),
    ("os.timezone", "Mars Standard Time", "dhcp"),
    ("os.productKey", "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX", "dhcp"),
    ("os.adminPassword", "", "dhcp"),
    ("network.mode", "bootp", "dhcp"),
    ("network.ip", "198.51.100.50", "dhcp"),
    ("network.ip", "198.51.100.300", "static"),
    ("network.ip", "198.51.100.255", "static"),
    ("network.subnet", "255.0.255.0", "static"),
    ("network.gateway", "203.0.113.1", "static"),
    ("network.dns[1]", "not-an-ip", "static"),
    ("domain.join", "true", "dhcp"),
    ("domain.name", "yourdom", "dhcp"),
    ("domain.ou", "OU=Servers,DC=otherdom,DC=local", "dhcp"),
    ("domain.method", "magic", "dhcp"),
    ("domain.serviceAccount.username", "", "dhcp"),
    ("postInstall.installAgent", 1, "dhcp"),
    ("postInstall.addToGroups[0]", 0, "dhcp"),
    ("postInstall.runPackages[0].packageId", -1, "dhcp"),
    ("postInstall.runPackages[0].parameters", "instanceName=X", "dhcp"),
    ("postInstall.runScripts[0].name", "../../etc/passwd", "dhcp"),
]


@pytest.mark.parametrize("row", INVALID, ids=[f"{r[0]}={r[1]!r}"[:60] for r in INVALID])
def test_each_invalid_field_gets_a_400_naming_it(client, refs, row):
    path, value, variant, *expected = row
    body = example(refs, variant)
    _set(body, path, value)
    response = client.post(TASKS, json=body)
    assert response.status_code == 400, response.json
    assert (expected[0] if expected else path) in response.json["errors"], response.json["errors"]
    assert client.get(TASKS).json["total"] == 0


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.update(surprise=1), "surprise"),
    (lambda b: b["vm"].update(gpu=1), "vm.gpu"),
    (lambda b: b["vm"].update(generation=1), "vm.secureboot"),
    (lambda b: b.update(targetType="kvm"), "hypervisorNodeId"),
    (lambda b: b.update(targetType="baremetal", hypervisorNodeId=None), "macAddress"),
], ids=["unknown-top", "unknown-nested", "secureboot-gen1", "kind-mismatch", "baremetal-no-mac"])
def test_cross_field_rules(client, refs, mutate, field):
    body = example(refs)
    mutate(body)
    response = client.post(TASKS, json=body)
    assert response.status_code == 400
    assert field in response.json["errors"], response.json["errors"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"'], ids=["broken", "list", "empty", "str"])
def test_body_that_is_not_an_object(client, raw):
    response = client.post(TASKS, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json["errors"]


@pytest.mark.parametrize("mac", ["00:15:5D:01:02:03", "00-15-5d-01-02-03", "0015.5d01.0203", "00155D010203"])
def test_mac_forms_are_stored_canonically(client, refs, mac):
    body = example(refs)
    body.update(targetType="baremetal", macAddress=mac)
    del body["hypervisorNodeId"], body["vm"]
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.json
    assert response.json["macAddress"] == "00:15:5d:01:02:03"
    assert client.get(TASKS, query_string={"macAddress": mac}).json["total"] == 1


def test_template_defaults_are_merged_under_the_request(client, refs):
    template = client.post("/api/v1/provisioning/templates", json={
        "name": "SQL Server Standard", "defaultCpu": 8, "defaultMemoryGb": 32, "imageId": refs["image"],
        "defaultDisks": [{"sizeGb": 80, "purpose": "os", "type": "dynamic"}],
        "language": "en-US", "timezone": "UTC"}).json
    body = {"hostname": "SQL-02", "targetType": "kvm", "hypervisorNodeId": refs["kvm"], "templateId": template["id"],
            "vm": {"memoryGb": 64}, "os": {"language": "fr-FR"}}
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.json
    config = response.json["config"]
    assert config["vm"]["cpu"] == 8 and config["vm"]["memoryGb"] == 64
    assert config["vm"]["disks"] == [{"sizeGb": 80, "purpose": "os", "type": "dynamic"}]
    assert config["os"]["language"] == "fr-FR" and config["os"]["timezone"] == "UTC"
    assert config["os"]["imageId"] == refs["image"]
    # the template changing later does not change the stored task
    client.put(f"/api/v1/provisioning/templates/{template['id']}", json={"defaultCpu": 2})
    assert client.get(f"{TASKS}/{response.json['id']}").json["config"]["vm"]["cpu"] == 8


def test_list_filters_and_pagination(client, refs):
    ids = []
    for index in range(7):
        body = example(refs)
        body["hostname"] = f"WEB-{index:02d}"
        ids.append(client.post(TASKS, json=body).json["id"])
    client.delete(f"{TASKS}/{ids[0]}")
    page = client.get(TASKS, query_string={"perPage": 3, "page": 2}).json
    assert page["total"] == 7 and page["perPage"] == 3 and page["page"] == 2
    assert [t["id"] for t in page["items"]] == list(reversed(ids))[3:6]
    assert client.get(TASKS, query_string={"status": "cancelled"}).json["total"] == 1
    assert client.get(TASKS, query_string={"hostname": "web-0"}).json["total"] == 7
    assert client.get(TASKS, query_string={"hostname": "WEB-03"}).json["items"][0]["id"] == ids[3]
    assert client.get(TASKS, query_string={"targetType": "kvm"}).json["total"] == 0
    for bad in ({"perPage": 0}, {"perPage": 100000}, {"page": "x"}, {"status": "sleeping"}):
        response = client.get(TASKS, query_string=bad)
        assert response.status_code == 400 and set(bad) <= set(response.json["errors"])


def test_cancel(client, refs):
    task = client.post(TASKS, json=example(refs)).json
    response = client.delete(f"{TASKS}/{task['id']}")
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    assert response.json["completedAt"] is not None
    assert client.delete(f"{TASKS}/{task['id']}").status_code == 409
    assert client.delete(f"{TASKS}/424242").status_code == 404
    messages = [e["message"] for e in client.get(f"{TASKS}/{task['id']}/logs").json]
    assert messages == ["Task created", "Task cancelled on request"]


def test_cancel_and_retry_send_their_work_to_the_dispatcher(client, refs, queue, runtime):
    from octoprov import pipeline

    task = client.post(TASKS, json=example(refs)).json
    first_run = queue.messages.popleft()
    assert first_run[:2] == ("chain", task["id"]) and not queue.messages
    assert client.post(f"{TASKS}/{task['id']}/retry").status_code == 409  # pending: nothing to retry
    with runtime.database.session() as session:
        pipeline.fail(session, task["id"], "create_vm", "broken")
    response = client.post(f"{TASKS}/{task['id']}/retry")
    assert response.status_code == 200 and response.json["status"] == "pending"
    assert list(queue.messages) == [first_run]  # no machine was made: from the start again
    assert client.delete(f"{TASKS}/{task['id']}").status_code == 200
    assert queue.messages[-1] == ("rollback", task["id"])
    assert client.post(f"{TASKS}/424242/retry").status_code == 404


def test_logs_tail_after_id(client, refs):
    task = client.post(TASKS, json=example(refs)).json
    client.delete(f"{TASKS}/{task['id']}")
    first, second = client.get(f"{TASKS}/{task['id']}/logs").json
    tail = client.get(f"{TASKS}/{task['id']}/logs", query_string={"afterId": first["id"]}).json
    assert tail == [second]
    assert client.get(f"{TASKS}/{task['id']}/logs", query_string={"since": "2999-01-01T00:00:00Z"}).json == []
    assert client.get(f"{TASKS}/{task['id']}/logs", query_string={"since": "yesterday"}).status_code == 400


def test_request_is_not_modified_by_storing(client, refs):
    body = example(refs)
    original = copy.deepcopy(body)
    client.post(TASKS, json=body)
    assert body == original


def test_a_task_is_kept_when_the_broker_is_down(runtime, token, refs):
    """Redis unreachable at creation: 201, the task is stored and found later by the periodic job."""
    from api import create_app
    from octoprov import pipeline
    from tests.support.live import free_port
    from workers.app import make_celery
    from workers.dispatch import Dispatcher

    down = runtime.settings.__class__(data_dir=runtime.settings.data_dir, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(runtime=runtime, dispatcher=Dispatcher(make_celery(down)))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    body = example(refs)
    body.update(targetType="kvm", hypervisorNodeId=refs["kvm"])
    body["vm"].update(network={"vswitch": "default"}, disks=[{"sizeGb": 40, "purpose": "os"}])  # libvirt's test host
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.json
    logs = client.get(f"{TASKS}/{response.json['id']}/logs").json
    assert any("broker could not be reached" in entry["message"] for entry in logs)
    with runtime.database.session() as session:
        found = pipeline.lost_work(session, grace_s=-1, limit=10)
    assert [(work.task_id, work.steps[0]) for work in found] == [(response.json["id"], "create_vm")]


def test_a_request_sent_again_with_its_idempotency_key_gets_the_task_it_created(client, refs, queue):
    """The answer to a submission was lost: sending the request again with the same key creates nothing."""
    body = example(refs)
    first = client.post(TASKS, json=body, headers={"Idempotency-Key": "3f1c9a7e-key"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = client.post(TASKS, json=body, headers={"Idempotency-Key": "3f1c9a7e-key"})
    assert again.status_code == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == client.get(f"{TASKS}/{first.json['id']}").json
    assert client.get(TASKS).json["total"] == 1
    assert [message[:2] for message in queue.messages] == [("chain", first.json["id"])]  # queued once

    other_key = client.post(TASKS, json=body, headers={"Idempotency-Key": "another-key"})
    assert other_key.status_code == 201 and other_key.json["id"] != first.json["id"]


def test_an_idempotency_key_sent_with_another_request_is_refused(client, refs):
    body = example(refs)
    created = client.post(TASKS, json=body, headers={"Idempotency-Key": "k-1"}).json
    changed = {**body, "hostname": "OTHER-01"}
    response = client.post(TASKS, json=changed, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 422
    assert response.json["errors"] == {"Idempotency-Key": f"was sent before with a different request (task "
                                                          f"{created['id']})"}
    assert client.get(TASKS).json["total"] == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\u00e9"])
def test_an_idempotency_key_the_header_cannot_carry_is_refused(client, refs, key):
    response = client.post(TASKS, json=example(refs), headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json["errors"]
    assert client.get(TASKS).json["total"] == 0


def test_the_same_request_sent_twice_at_once_makes_one_task(app, token, refs, database):
    """Two copies of a request racing each other (a client retrying while the first is still served): the
    database's unique key lets one create the task; the other answers with it."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: no race to have")
    body = example(refs)
    barrier = threading.Barrier(4)
    answers: list[tuple[int, int, str | None]] = []

    def send() -> None:
        client = app.test_client()
        headers = {"Idempotency-Key": "raced", "Authorization": f"Bearer {token}"}
        barrier.wait()
        response = client.post(TASKS, json=body, headers=headers)
        answers.append((response.status_code, response.json["id"], response.headers.get("Idempotent-Replayed")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {(status, task_id) for status, task_id, _ in answers} == {(201, answers[0][1])}
    assert sorted(replayed or "" for _, _, replayed in answers) == ["", "true", "true", "true"]
