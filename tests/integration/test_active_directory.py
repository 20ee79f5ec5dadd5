"""Active Directory against a real domain controller (Samba's AD DC, tests/support/samba_dc.py): the samba
backend's offline join, whose blob a Samba member server consumes and then passes ``net ads testjoin``;
the computer account's lifecycle over LDAPS (created in the OU, tagged, rolled back with what it holds,
made again on retry; a stranger's account of the same name refused and left untouched); and the join's
account checked at ``POST /tasks``.

A task runs through the API and the real step functions (InlineQueue), on a throwaway target that is the
fake one (no machine) with the real domain-join backend chosen by the settings.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.fernet import Fernet
from defusedxml import ElementTree

from api import create_app
from octoprov.answerfiles.files import task_files
from octoprov.context import load_context
from octoprov.crypto import Vault
from octoprov.domainjoin import domain_join_backend
from octoprov.models import Task
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from octoprov.targets import registry
from octoprov.targets.fake import fake_target
from tests.conftest import sqlite_database
from tests.support.examples import ADMIN_PASSWORD
from tests.support.samba_dc import BASE_DN, DOMAIN, OU

TASKS = "/api/v1/provisioning/tasks"
TAG = "octoprov-task:"
COMPUTER = ["top", "person", "organizationalPerson", "user", "computer"]


@pytest.fixture
def settings(tmp_path, lab_dns) -> Settings:
    """The samba backend against the lab's DC: its name, the CA Samba made, net resolving as the lab does."""
    s = Settings(data_dir=tmp_path / "var", secret_key=Fernet.generate_key().decode(), domain_join_backend="samba",
                 domain_controller=lab_dns.dc_name, domain_ca_file=lab_dns.ca_file,
                 samba_net=str(lab_dns.net_program))
    s.ensure_dirs()
    return s


@pytest.fixture
def database(settings):
    yield from sqlite_database(settings)


@pytest.fixture
def fake_ad():
    """The fake target (no machine) whose domain join is the one the settings choose."""
    target = registry.register(registry.TargetType(
        name="fake-ad", label="Fake with a real domain (test only)", queue="default", makes_vms=True,
        node_kinds=("fake",), serves_answers=False,
        driver=lambda: dataclasses.replace(fake_target(), domain=domain_join_backend())))
    yield target
    registry.unregister(target.name)


@pytest.fixture
def refs(client, settings, fake_ad):
    (settings.effective_images_dir / "2025.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={"name": "Windows Server 2025", "osType": "windows",
                                                             "imagePath": "2025.wim"}).json["id"]

    def node(name: str, **fake) -> int:
        response = client.post("/api/v1/provisioning/hypervisors", json={
            "name": name, "kind": "fake", "endpoint": "fake://lab", "fake": {"delayS": 0, "callbacks": False, **fake}})
        assert response.status_code == 201, response.json
        return response.json["id"]

    return {"image": image, "node": node}


def request(refs, node: int, hostname: str, **domain) -> dict:
    service = {"username": "svc-join@" + DOMAIN, "password": refs["service_password"]}
    return {
        "hostname": hostname, "targetType": "fake-ad", "hypervisorNodeId": node,
        "vm": {"disks": [{"sizeGb": 60, "purpose": "os"}]},
        "os": {"imageId": refs["image"], "adminPassword": ADMIN_PASSWORD},
        "domain": {"join": True, "name": DOMAIN, "ou": OU, "method": "offline", "serviceAccount": service, **domain},
        "postInstall": {"installAgent": False},
    }


@pytest.fixture
def lab(refs, lab_dns):
    return {**refs, "service_password": lab_dns.service.password}


def computer(dc, name: str) -> dict | None:
    """The account as the domain's administrator sees it."""
    ldap = dc.ldap()
    try:
        ldap.search(BASE_DN, f"(sAMAccountName={name}$)", attributes=["description", "uSNChanged", "pwdLastSet",
                                                                      "userAccountControl"])
        found = [entry for entry in ldap.response if entry["type"] == "searchResEntry"]
    finally:
        ldap.unbind()
    return {"dn": found[0]["dn"], **found[0]["attributes"]} if found else None


def account_data(autounattend: str) -> str:
    """The blob the answer file carries in Microsoft-Windows-UnattendedJoin/Identification/Provisioning."""
    found = [element.text for element in ElementTree.fromstring(autounattend).iter()
             if element.tag.endswith("}AccountData")]
    assert len(found) == 1, autounattend
    return found[0] or ""


def test_an_offline_join_blob_joins_a_samba_member_and_rollback_removes_its_account(client, queue, runtime, lab,
                                                                                    lab_dns):
    dc, name = lab_dns, "WEB-ODJ1"
    task = client.post(TASKS, json=request(lab, lab["node"]("ODJ", failAt="power_on"), name))
    assert task.status_code == 201, task.json
    task_id = task.json["id"]
    queue.deliver(stop_after="render_answers")

    account = computer(dc, name)
    assert account is not None and account["dn"] == f"CN={name},{OU}"  # in the requested OU
    assert account["description"] in (f"{TAG}{task_id}", [f"{TAG}{task_id}"])  # tagged with the task
    with runtime.database.session() as session:
        row = session.get_one(Task, task_id)
        stored = runtime.vault.decrypt(row.domain_join_blob)
        answers = task_files(session, runtime.settings, runtime.vault, row)
    blob = account_data(answers.files["autounattend.xml"])
    assert blob == stored  # what the machine gets is what the step made (and stored encrypted)

    member = dc.member(name)
    consumed = member.request_odj(blob)
    assert consumed.returncode == 0, consumed.stdout + consumed.stderr
    joined = member.testjoin()
    assert joined.returncode == 0 and "Join is OK" in joined.stdout, joined.stdout + joined.stderr

    # something a machine's account gains below it (BitLocker keys, service connection points): the
    # rollback has to delete the tree
    ldap = dc.ldap()
    ldap.add(f"CN=Octoprov test SCP,{account['dn']}", ["top", "leaf", "connectionPoint", "serviceConnectionPoint"])
    ldap.unbind()

    queue.deliver()  # power_on fails for good: the task fails and rolls back
    failed = client.get(f"{TASKS}/{task_id}").json
    assert failed["status"] == "failed", failed
    assert computer(dc, name) is None
    assert member.testjoin().returncode != 0  # the domain no longer knows the machine: the check above is real
    logs = [entry["message"] for entry in client.get(f"{TASKS}/{task_id}/logs").json]
    assert any(m.startswith(f"Rollback: Removed computer account {name}") for m in logs), logs

    # a retry after the rollback provisions again: a new account, a new blob that joins as well
    assert client.post(f"{TASKS}/{task_id}/retry").status_code == 200
    queue.deliver(stop_after="prepare_domain_join")
    again = computer(dc, name)
    assert again is not None and again["dn"] == f"CN={name},{OU}"
    with runtime.database.session() as session:
        second = runtime.vault.decrypt(session.get_one(Task, task_id).domain_join_blob)
    assert second != blob
    rejoined = dc.member(name)
    assert rejoined.request_odj(second).returncode == 0
    assert rejoined.testjoin().returncode == 0

    assert client.delete(f"{TASKS}/{task_id}").status_code == 200  # cancelled: rolled back
    queue.deliver()
    assert computer(dc, name) is None
    logs = [entry["message"] for entry in client.get(f"{TASKS}/{task_id}/logs").json]
    assert not [text for text in logs if lab["service_password"] in text or dc.admin.password in text]


def test_an_account_of_that_name_the_task_did_not_create_is_refused_and_left_untouched(client, queue, runtime, lab,
                                                                                     lab_dns):
    dc, name = lab_dns, "WEB-TAKEN"
    theirs = f"CN={name},CN=Computers,{BASE_DN}"  # elsewhere in the domain: account names are domain-wide
    ldap = dc.ldap()
    ldap.add(theirs, COMPUTER, {"sAMAccountName": f"{name}$", "userAccountControl": 4096,
                                "description": "the finance team's print server",
                                "unicodePwd": '"Their-0wn-Passw0rd!"'.encode("utf-16-le")})
    ldap.unbind()
    before = computer(dc, name)
    try:
        task = client.post(TASKS, json=request(lab, lab["node"]("TAKEN"), name))
        assert task.status_code == 201, task.json
        task_id = task.json["id"]
        queue.deliver()
        failed = client.get(f"{TASKS}/{task_id}").json
        assert failed["status"] == "failed", failed
        step = next(s for s in failed["steps"] if s["name"] == "prepare_domain_join")
        assert step["status"] == "failed"
        assert "already exists" in failed["errorMessage"] and "not created by this task" in failed["errorMessage"]
        assert theirs in failed["errorMessage"]

        # the rollback of this task, asked directly, keeps it too
        with runtime.database.session() as session:
            ctx = load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)
        assert "kept" in domain_join_backend(runtime.settings).remove_computer_account(ctx)
        assert computer(dc, name) == before  # not modified (uSNChanged, password, description) nor deleted
    finally:
        ldap = dc.ldap()
        ldap.delete(theirs)
        ldap.unbind()


def test_a_joins_account_is_checked_when_the_task_is_posted(client, lab):
    online = request(lab, lab["node"]("ONLINE"), "WEB-ONLINE", method="online")
    assert client.post(TASKS, json=online).status_code == 201

    wrong = request(lab, lab["node"]("WRONG"), "WEB-WRONG", method="online",
                    serviceAccount={"username": "svc-join@" + DOMAIN, "password": "Not-the-Passw0rd"})
    refused = client.post(TASKS, json=wrong)
    assert refused.status_code == 400 and list(refused.json["errors"]) == ["domain.serviceAccount.password"]
    assert "Not-the-Passw0rd" not in refused.text
    dry = client.post(TASKS, query_string={"dryRun": "true"}, json=wrong)  # the dry run validates the same way
    assert dry.status_code == 400 and "domain.serviceAccount.password" in dry.json["errors"]

    nowhere = request(lab, lab["node"]("NOWHERE"), "WEB-NOWHERE", method="online", ou=f"OU=Nowhere,{BASE_DN}")
    unknown = client.post(TASKS, json=nowhere)
    assert unknown.status_code == 400 and list(unknown.json["errors"]) == ["domain.ou"]

    # the offline join's account (the samba backend's) is checked the same way
    offline = request(lab, lab["node"]("OFFLINE"), "WEB-OFFLINE",
                      serviceAccount={"username": "svc-join@" + DOMAIN, "password": "Not-the-Passw0rd"})
    refused = client.post(TASKS, json=offline)
    assert refused.status_code == 400 and list(refused.json["errors"]) == ["domain.serviceAccount.password"]


@pytest.mark.parametrize(("case", "expected"), [
    ("unreachable", "did not answer"),  # its name resolves nowhere
    ("by address", "not trusted"),  # its certificate names DC1.octolab.test, not the address
    ("system CAs", "not trusted"),  # Samba's own CA is not among them
])
def test_a_domain_controller_that_cannot_be_used_is_a_warning_not_a_refusal(settings, database, token, lab, lab_dns,
                                                                          case, expected):
    """No password goes to a DC whose certificate fails (TLS comes first); the task is accepted, its log says why."""
    change = {"unreachable": {"domain_controller": "gone.octolab.test"},
              "by address": {"domain_controller": lab_dns.address},
              "system CAs": {"domain_ca_file": None}}[case]
    changed = settings.model_copy(update=change)
    client = create_app(runtime=Runtime(changed, database, Vault.from_settings(changed))).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    task = client.post(TASKS, json=request(lab, lab["node"]("UNUSABLE"), "WEB-UNUSABLE", method="online"))
    assert task.status_code == 201, task.json
    logs = client.get(f"{TASKS}/{task.json['id']}/logs").json
    warnings = [entry["message"] for entry in logs if entry["level"] == "warn"]
    assert len(warnings) == 1 and "Domain join not checked" in warnings[0] and expected in warnings[0], logs
