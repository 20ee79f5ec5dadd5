"""Task creation checks what ``postInstall`` names: packages and groups exist, packages get the
parameters their schema declares and suit the image's OS, library scripts exist for that OS. Each
mistake is a 400 under the request's own field path (through the API, on SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from octoprov.errors import InvalidRequest
from octoprov.references import script_os_type, script_path
from octoprov.settings import Settings
from octoprov.taskspec import parse_task_request
from tests.support.library import API, created, linux_package, windows_package

TASKS = f"{API}/tasks"
SCRIPTS_DIR = Settings().effective_scripts_dir  # the library shipped in answers/scripts


@pytest.fixture
def refs(client, settings):
    """Images for both OSes, a fake node, a package for each OS and two groups."""
    ids = {}
    for os_type, file in (("windows", "install.wim"), ("linux", "rocky.iso")):
        (settings.effective_images_dir / file).write_bytes(b"image")
        ids[os_type] = created(client, "images", {"name": file, "osType": os_type, "imagePath": file})["id"]
    ids["node"] = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})["id"]
    ids["sql"] = created(client, "packages", windows_package())["id"]
    ids["nginx"] = created(client, "packages", linux_package())["id"]
    ids["groups"] = [created(client, "groups", {"name": name})["id"] for name in ("SQL Servers", "Berlin")]
    return ids


def request(refs, os_type: str = "windows", **post_install) -> dict:
    return {"hostname": "SQL-01" if os_type == "windows" else "web01", "targetType": "fake",
            "hypervisorNodeId": refs["node"], "vm": {"disks": [{"sizeGb": 60, "purpose": "os"}]},
            "os": {"imageId": refs[os_type]}, "postInstall": post_install}


def windows_post_install(refs) -> dict:
    return {"addToGroups": refs["groups"],
            "runPackages": [{"packageId": refs["sql"], "parameters": {"instanceName": "SQL01"}}],
            "runScripts": [{"name": "Configure-Firewall.ps1", "parameters": {"AllowPing": False}}]}


def errors_for(client, body: dict) -> dict[str, str]:
    response = client.post(TASKS, json=body)
    assert response.status_code == 400, response.json
    return response.json["errors"]


def test_a_request_naming_what_exists_is_accepted_as_sent(client, refs):
    post_install = windows_post_install(refs)
    response = client.post(TASKS, json=request(refs, **post_install))
    assert response.status_code == 201, response.json
    stored = response.json["config"]["postInstall"]
    assert stored["addToGroups"] == refs["groups"]
    assert stored["runPackages"] == post_install["runPackages"]  # defaults are the runner's to add
    assert stored["runScripts"] == post_install["runScripts"]

    linux = {"runPackages": [{"packageId": refs["nginx"]}], "runScripts": [{"name": "configure-firewall.sh"}]}
    response = client.post(TASKS, json=request(refs, "linux", **linux))
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda p, r: p["addToGroups"].append(999), "postInstall.addToGroups[2]", "no group with id 999"),
    (lambda p, r: p["runPackages"][0].update(packageId=999), "postInstall.runPackages[0].packageId",
     "no package with id 999"),
    (lambda p, r: p["runPackages"].append({"packageId": r["nginx"]}), "postInstall.runPackages[1].packageId",
     "for linux, the image is windows"),
    (lambda p, r: p["runPackages"][0].update(parameters={"instanceName": "sql 01"}),
     "postInstall.runPackages[0].parameters.instanceName", "must match"),
    (lambda p, r: p["runPackages"][0].update(parameters={}),
     "postInstall.runPackages[0].parameters.instanceName", "required by package SQL Server 2022"),
    (lambda p, r: p["runPackages"][0]["parameters"].update(port=22),
     "postInstall.runPackages[0].parameters.port", "between 1024 and 65535"),
    (lambda p, r: p["runPackages"][0]["parameters"].update(collation="x"),
     "postInstall.runPackages[0].parameters.collation", "no such parameter"),
    (lambda p, r: p["runScripts"].append({"name": "Missing.ps1"}), "postInstall.runScripts[1].name",
     "no script Missing.ps1 in the scripts library"),
    (lambda p, r: p["runScripts"].append({"name": "configure-firewall.sh"}), "postInstall.runScripts[1].name",
     "is a linux script, the image is windows"),
    (lambda p, r: p["runScripts"].append({"name": "README.md"}), "postInstall.runScripts[1].name", "no script"),
])
def test_each_bad_reference_gets_a_400_naming_it(client, refs, change, field, words):
    post_install = windows_post_install(refs)
    change(post_install, refs)
    errors = errors_for(client, request(refs, **post_install))
    assert set(errors) == {field}, errors
    assert words in errors[field]


def test_every_bad_reference_is_reported_at_once_with_the_other_errors(client, refs):
    body = request(refs, "linux", addToGroups=[refs["groups"][0], 998],
                   runPackages=[{"packageId": refs["sql"], "parameters": {"port": "x"}}, {"packageId": 997}],
                   runScripts=[{"name": "Configure-Firewall.ps1"}, {"name": "../etc/passwd"}])
    body["vm"]["cpu"] = 0
    assert set(errors_for(client, body)) == {
        "vm.cpu", "postInstall.addToGroups[1]", "postInstall.runPackages[0].packageId",
        "postInstall.runPackages[0].parameters.instanceName", "postInstall.runPackages[0].parameters.port",
        "postInstall.runPackages[1].packageId", "postInstall.runScripts[0].name", "postInstall.runScripts[1].name",
    }


@pytest.mark.parametrize(("post_install", "field"), [
    ({"addToGroups": ["5"]}, "postInstall.addToGroups[0]"),
    ({"runPackages": [{"packageId": True}]}, "postInstall.runPackages[0].packageId"),
    ({"runPackages": [{"packageId": 2**40}]}, "postInstall.runPackages[0].packageId"),
    ({"runPackages": ["sql"]}, "postInstall.runPackages[0]"),
    ({"runPackages": {"packageId": 1}}, "postInstall.runPackages"),
    ({"runScripts": [{"name": 5}]}, "postInstall.runScripts[0].name"),
])
def test_malformed_references_are_400_not_500(client, refs, post_install, field):
    assert field in errors_for(client, request(refs, **post_install))


def test_template_packages_are_checked_when_a_task_uses_the_template(client, refs):
    template = created(client, "templates", {"name": "SQL", "postInstallPackages": [{"packageId": refs["sql"]}]})
    body = {**request(refs), "templateId": template["id"]}
    assert set(errors_for(client, body)) == {"postInstall.runPackages[0].parameters.instanceName"}


def test_a_deleted_group_or_package_is_refused_afterwards(client, refs):
    assert client.delete(f"{API}/groups/{refs['groups'][1]}").status_code == 204
    assert client.delete(f"{API}/packages/{refs['sql']}").status_code == 204
    assert set(errors_for(client, request(refs, **windows_post_install(refs)))) == {
        "postInstall.addToGroups[1]", "postInstall.runPackages[0].packageId"}


def test_a_task_keeps_its_package_and_groups(client, refs):
    response = client.post(TASKS, json=request(refs, **windows_post_install(refs)))
    assert response.status_code == 201, response.json
    assert client.delete(f"{API}/packages/{refs['sql']}").status_code == 409
    assert client.delete(f"{API}/groups/{refs['groups'][0]}").status_code == 409
    assert client.delete(f"{API}/packages/{refs['nginx']}").status_code == 204


class Refs:
    """Image 1 has no known OS type: OS rules need one, existence rules do not."""

    def image_os_type(self, image_id):
        return None

    def image_indexes(self, image_id):
        return None

    def template_exists(self, template_id):
        return False

    def hypervisor_kind(self, node_id):
        return "fake"

    def package(self, package_id):
        return None

    def group_exists(self, group_id):
        return False

    def script_os_type(self, name):
        return script_os_type(name, SCRIPTS_DIR)


def test_without_an_image_only_existence_is_checked():
    body = {"hostname": "SQL-01", "targetType": "fake", "hypervisorNodeId": 1,
            "vm": {"disks": [{"sizeGb": 60, "purpose": "os"}]}, "os": {"imageId": 1},
            "postInstall": {"addToGroups": [3], "runPackages": [{"packageId": 4}],
                            "runScripts": [{"name": "configure-firewall.sh"}, {"name": "Configure-Firewall.ps1"}]}}
    with pytest.raises(InvalidRequest) as raised:
        parse_task_request(body, {}, Refs())
    assert set(raised.value.errors) == {"os.imageId", "postInstall.addToGroups[0]",
                                        "postInstall.runPackages[0].packageId"}


# -- the scripts library -------------------------------------------------------------------------------

def test_the_library_holds_a_firewall_script_for_each_os():
    assert {path.name: script_os_type(path.name, SCRIPTS_DIR) for path in SCRIPTS_DIR.iterdir()} == {
        "Configure-Firewall.ps1": "windows", "configure-firewall.sh": "linux"}
    for name in ("../references.py", "/etc/passwd", ".hidden.sh", "configure-firewall", "Missing.ps1", ""):
        assert script_path(name, SCRIPTS_DIR) is None and script_os_type(name, SCRIPTS_DIR) is None


def test_the_configured_library_is_the_one_checked(client, refs, tmp_path, monkeypatch):
    """The API process reads OCTOPROV_SCRIPTS_DIR, as the worker that runs the scripts does."""
    (tmp_path / "greet.sh").write_text("echo hello\n")
    (tmp_path / "notes.txt").write_text("not a script\n")
    monkeypatch.setenv("OCTOPROV_SCRIPTS_DIR", str(tmp_path))
    response = client.post(TASKS, json=request(refs, "linux", runScripts=[{"name": "greet.sh"}]))
    assert response.status_code == 201, response.json
    body = request(refs, "linux", runScripts=[{"name": "configure-firewall.sh"}, {"name": "notes.txt"}])
    assert set(errors_for(client, body)) == {"postInstall.runScripts[0].name", "postInstall.runScripts[1].name"}


def test_each_script_says_what_it_does_in_a_header():
    powershell = (SCRIPTS_DIR / "Configure-Firewall.ps1").read_text()
    assert powershell.startswith("<#\n.SYNOPSIS\n")
    assert re.search(r"(?m)^param\(", powershell) and "Set-NetFirewallProfile" in powershell
    shell = (SCRIPTS_DIR / "configure-firewall.sh").read_text()
    assert shell.startswith("#!/bin/sh\n# Octoprov post-install library script")
    assert "ufw" in shell and "nft" in shell


def test_the_shell_script_parses_and_refuses_bad_parameters_before_touching_anything(tmp_path):
    script = SCRIPTS_DIR / "configure-firewall.sh"
    shell = shutil.which("dash") or shutil.which("sh")
    subprocess.run([shell, "-n", str(script)], check=True)
    env = {"PATH": str(tmp_path)}  # no firewall tool: nothing could be changed even if the checks let it through
    bad_values = ({"SshPort": "22; reboot"}, {"SshPort": "70000"}, {"SshPort": "99999999999999999999999"},
                  {"ExtraTcpPorts": "443,0"}, {"ExtraTcpPorts": "443 *"}, {"AllowPing": "maybe"})
    for bad in bad_values:
        result = subprocess.run([shell, str(script)], env={**env, **bad}, capture_output=True, text=True)
        assert result.returncode == 2, (bad, result.stderr)
    result = subprocess.run([shell, str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "no firewall tool found" in result.stderr
