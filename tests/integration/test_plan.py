"""Dry runs: the same validation as a real task, every artifact written, nothing stored."""

from __future__ import annotations

import json

from tests.support.examples import ADMIN_PASSWORD, spec_example, store_post_install, store_post_install_in
from tests.support.live import octoprov

TASKS = "/api/v1/provisioning/tasks"


def _refs(client, settings):
    (settings.effective_images_dir / "a.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={"name": "x", "osType": "windows",
                                                             "imagePath": "a.wim"}).json["id"]
    node = client.post("/api/v1/provisioning/hypervisors", json={"name": "F", "kind": "fake",
                                                                 "endpoint": "fake://lab"}).json["id"]
    stored = store_post_install(
        lambda resource, body: client.post(f"/api/v1/provisioning/{resource}", json=body).json["id"])
    body = spec_example("static", image_id=image, node_id=node, **stored)
    body["targetType"] = "fake"
    return body


def test_dry_run_returns_the_plan_and_stores_nothing(client, settings):
    body = _refs(client, settings)
    response = client.post(TASKS, query_string={"dryRun": "true"}, json=body)
    assert response.status_code == 200, response.json
    plan = response.json
    assert plan["valid"] is True and plan["task"]["id"] is None
    assert [s["name"] for s in plan["task"]["steps"]][:3] == ["create_vm", "prepare_domain_join", "render_answers"]
    actions = json.loads(plan["artifacts"]["plan.json"])["actions"]
    assert actions[0] == {"position": 1, "step": "create_vm", "title": "Create VM on F"}
    assert ADMIN_PASSWORD not in json.dumps(plan)
    assert client.get(TASKS).json["total"] == 0


def test_dry_run_reports_the_same_errors(client, settings):
    body = _refs(client, settings)
    body["hostname"] = "far-too-long-for-netbios"
    response = client.post(TASKS, query_string={"dryRun": "1"}, json=body)
    assert response.status_code == 400 and "hostname" in response.json["errors"]
    assert client.post(TASKS, query_string={"dryRun": "maybe"}, json=body).status_code == 400


def test_cli_plan_writes_the_artifacts(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OCTOPROV_DATA_DIR": str(tmp_path / "var")}
    octoprov("db", "upgrade", env=env)
    from octoprov.db import Database
    from octoprov.models import Image, Node
    from octoprov.settings import Settings

    with Database.from_settings(Settings.from_env(env)).session() as session:
        image = Image(name="x", os_type="windows", image_path="a.wim")
        node = Node(name="F", role="hypervisor", kind="fake", endpoint="fake://lab")
        session.add_all([image, node])
        session.flush()
        body = spec_example("dhcp", image_id=image.id, node_id=node.id, **store_post_install_in(session))
    body["targetType"] = "fake"
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    out = tmp_path / "plan"
    result = octoprov("task", "plan", "--file", str(request), "--out", str(out), env=env)
    assert "plan.json" in result.stdout
    assert json.loads((out / "plan.json").read_text())["hostname"] == "SQL-SERVER-01"
    listing = octoprov("task", "list", env=env).stdout
    assert "(0 of 0)" in listing


def test_kvm_dry_run_writes_the_domain_xml(client, settings, tmp_path):
    import subprocess

    (settings.effective_images_dir / "a.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={"name": "x", "osType": "windows",
                                                             "imagePath": "a.wim"}).json["id"]
    node = client.post("/api/v1/provisioning/hypervisors", json={"name": "KVM", "kind": "kvm",
                                                                 "endpoint": "test:///default"}).json["id"]
    body = {"hostname": "KVM-01", "targetType": "kvm", "hypervisorNodeId": node, "os": {"imageId": image},
            "vm": {"cpu": 2, "memoryGb": 4, "disks": [{"sizeGb": 40, "purpose": "os"},
                                                       {"sizeGb": 10, "purpose": "data", "type": "fixed"}]}}
    plan = client.post(TASKS, query_string={"dryRun": "true"}, json=body)
    assert plan.status_code == 200, plan.json
    xml = plan.json["artifacts"]["domain.xml"]
    assert "<name>KVM-01</name>" in xml and "KVM-01-os" in xml and "KVM-01-data" in xml
    actions = json.loads(plan.json["artifacts"]["plan.json"])["actions"]
    after_first_boot = actions[[a["step"] for a in actions].index("first_boot") + 1]
    assert (after_first_boot["step"], after_first_boot["title"]) == ("boot_from_disk", "Boot from disk first")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    checked = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert client.get(TASKS).json["total"] == 0

    unreachable = client.post("/api/v1/provisioning/hypervisors", json={
        "name": "GONE", "kind": "kvm", "endpoint": "qemu+unix:///system?socket=/nonexistent/sock"}).json["id"]
    body["hypervisorNodeId"] = unreachable
    plan = client.post(TASKS, query_string={"dryRun": "true"}, json=body).json
    assert "domain.xml" not in plan["artifacts"]
    assert "domain.xml not written" in json.loads(plan["artifacts"]["plan.json"])["notes"][0]
