"""A whole Hyper-V task through the pipeline, against the fake hosts of tests/support/fake_pypsrp.py.

The fake hosts live in this process (their state is Python objects), so a Celery worker in
another process cannot reach them. Instead the steps run in-process, exactly as the worker runs
them: the real Celery task functions of ``workers/step_tasks.py`` (``octoprov.step`` and
``octoprov.rollback``) are called for each message, in the order the chains would deliver them,
and what they enqueue (the next chain after a callback, a rollback) goes to an in-process queue
instead of the broker. The API (task creation, status callbacks, cancel) is the real Flask app.
The broker and the worker process are the only parts left out; tests/integration/test_pipeline.py covers
those with the fake target.
"""

from __future__ import annotations

import base64

import pytest

from octoprov.answerfiles.files import task_files
from octoprov.models import Task
from octoprov.targets.hyperv.commands import task_mac
from tests.support.fake_pypsrp import ADMIN_PASSWORD, DJOIN_PASSWORD, NODE_PASSWORD, lab_settings

pytestmark = pytest.mark.filterwarnings("ignore::pypsrp.negotiate.NoCertificateRetrievedWarning")
API = "/api/v1/provisioning"
EVENTS = ("installer_started", "os_installed", "first_boot", "domain_joined")


@pytest.fixture
def settings(tmp_path):
    return lab_settings(tmp_path / "var")


def report(lab, task_id: int, event: str) -> dict:
    with lab.runtime.database.session() as session:
        token = lab.runtime.vault.decrypt(session.get(Task, task_id).callback_token_encrypted)
    answer = lab.client.post(API + "/pxe/status", json={"taskId": task_id, "token": token, "event": event,
                                                        "status": "ok"})
    assert answer.status_code == 200, answer.json
    return answer.json


def test_a_hyperv_task_completes_with_the_join_blob_encrypted_and_in_the_answer_file(lab, queue):
    task = lab.task()
    assert [step["name"] for step in task["steps"]][:5] == ["create_vm", "prepare_domain_join", "render_answers",
                                                             "register_mac", "power_on"]
    queue.deliver()
    running = lab.client.get(f"{API}/tasks/{task['id']}").json
    assert running["status"] == "booting", running
    assert lab.hv.vms["SQL-01"]["State"] == "Running" and lab.hv.vms["SQL-01"]["FirstBoot"] == "Network"
    assert lab.hv.vms["SQL-01"]["SecureBoot"] == "Off"  # WinPE boots through wimboot, which is not signed
    for event in EVENTS:  # what WinPE, Setup and the first logon report
        assert report(lab, task["id"], event)["accepted"]
        if event == "os_installed":  # WinPE shuts the VM down (startnet.cmd: wpeutil shutdown)
            lab.hv.vms["SQL-01"]["State"] = "Off"
        queue.deliver()
    done = lab.client.get(f"{API}/tasks/{task['id']}").json
    assert done["status"] == "completed", done
    assert {step["status"] for step in done["steps"]} == {"done"}
    # once the machine's last report is in, its OS disk goes first: a reboot after the task reaches it directly
    names = [step["name"] for step in done["steps"]]
    assert names[names.index("domain_join"):] == ["domain_join", "boot_from_disk", "install_agent", "finish"]
    # Secure Boot came on while the VM was off, before Windows first started
    assert names[names.index("os_install"):][:3] == ["os_install", "enable_secure_boot", "first_boot"]
    vm = lab.hv.vms["SQL-01"]
    assert (vm["SecureBoot"], vm["SecureBootTemplate"], vm["State"]) == (
        "On", "MicrosoftUEFICertificateAuthority", "Running")
    assert lab.hv.vms["SQL-01"]["FirstBoot"] == r"D:\Hyper-V\Virtual Hard Disks\SQL-01-os.vhdx"
    assert lab.hv.refused == []
    assert done["macAddress"] == task_mac(task["id"])
    assert lab.hv.vms["SQL-01"]["Adapters"][0]["MacAddress"] == task_mac(task["id"]).replace(":", "").upper()
    assert next(s for s in done["steps"] if s["name"] == "prepare_domain_join")["detail"] == (
        "Computer account SQL-01 created in yourdom.local; blob stored encrypted")

    blob = base64.b64encode(b"ODJ blob for SQL-01 in yourdom.local").decode()  # what the fake djoin.exe made
    with lab.runtime.database.session() as session:
        row = session.get(Task, task["id"])
        stored = row.domain_join_blob
        assert stored and blob not in stored  # encrypted at rest
        assert lab.runtime.vault.decrypt(stored) == blob
        files = task_files(session, lab.runtime.settings, lab.runtime.vault, row)
    assert f"<AccountData>{blob}</AccountData>" in files.files["autounattend.xml"]  # what the machine fetches
    assert lab.dc.accounts["SQL-01"]["Description"] == f"octoprov-task:{task['id']}"

    everything = str(lab.client.get(f"{API}/tasks/{task['id']}").json)
    everything += str(lab.client.get(f"{API}/tasks/{task['id']}/logs").json)
    for secret in (blob, ADMIN_PASSWORD, NODE_PASSWORD, DJOIN_PASSWORD):
        assert secret not in everything


@pytest.mark.parametrize(("cancel_after", "expected"), [
    ("create_vm", ["Read-OctoprovVM", "Remove-VM", "Remove-Item", "Remove-Item"]),
    ("power_on", ["Read-OctoprovVM", "Stop-VM", "Remove-VM", "Remove-Item", "Remove-Item"]),
], ids=["after-create_vm", "after-power_on"])
def test_cancel_rolls_back_in_order(lab, queue, cancel_after, expected):
    task = lab.task()
    queue.deliver(stop_after=cancel_after)
    joined = cancel_after != "create_vm"
    lab.hv.calls.clear()
    cancelled = lab.client.delete(f"{API}/tasks/{task['id']}")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    queue.deliver()  # the rest of the chain finds the task over; then the rollback runs
    assert [(call.name, call.parameters.get("LiteralPath")) for call in lab.hv.calls] == list(zip(expected, [
        None] * (len(expected) - 2) + [r"D:\Hyper-V\Virtual Hard Disks\SQL-01-os.vhdx",
                                       r"D:\Hyper-V\Virtual Hard Disks\SQL-01-data.vhdx"], strict=True))
    assert lab.hv.vms == {} and lab.hv.files == {}
    if joined:  # the computer account this task created goes too
        assert lab.dc.names()[-2:] == ["Find-OctoprovComputerAccount", "Remove-ADObject"]
    assert lab.dc.accounts == {}
    assert lab.client.get(f"{API}/tasks/{task['id']}").json["status"] == "cancelled"
    logs = [entry["message"] for entry in lab.client.get(f"{API}/tasks/{task['id']}/logs").json]
    assert "Rollback: Removed SQL-01 and 2 file(s) on HV01" in logs


def test_a_refused_login_fails_the_task_at_once_and_a_dropped_connection_is_retried(lab, queue):
    lab.hv.drop_after = "Set-VMProcessor"
    task = lab.task()
    queue.deliver(stop_after="create_vm")
    detail = lab.client.get(f"{API}/tasks/{task['id']}").json
    create = next(step for step in detail["steps"] if step["name"] == "create_vm")
    assert create["status"] == "done" and create["detail"].startswith("Created")
    logs = [entry["message"] for entry in lab.client.get(f"{API}/tasks/{task['id']}/logs").json]
    assert any("Connection reset by peer')); retrying" in line for line in logs), logs
    assert len(lab.hv.vms) == 1

    lab.dc.refuse_login = True
    queue.deliver()
    failed = lab.client.get(f"{API}/tasks/{task['id']}").json
    assert failed["status"] == "failed"
    assert failed["errorMessage"] == ("Prepare offline domain join: WinRM on management host dc01.yourdom.test "
                                      "(dc01.yourdom.test:5986) refused the login of YOURDOM\\svc-djoin (ntlm): "
                                      "check the node's username and password")
    assert lab.hv.vms == {}  # rolled back
