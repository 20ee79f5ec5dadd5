"""What a status callback may claim about the machine (docs/operations.md, "What a callback can
claim"): its addresses are kept only when they include the address the callback came from, so that
a callback token read from a boot script cannot point post-install at another machine.

Through the real Flask app and database; the callback's source address is the test client's
REMOTE_ADDR (127.0.0.1 unless a test sets it), behind a proxy the X-Forwarded-For it appended.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from api import create_app
from api.runtime import DISPATCH
from octoprov import pipeline
from octoprov.errors import PermanentError
from octoprov.models import Task, TaskLog, TaskStep
from octoprov.netboot.answercache import flush_all
from octoprov.postinstall.common import reported
from octoprov.runtime import Runtime
from tests.support.library import API, created

STATUS = f"{API}/pxe/status"
FOREIGN = "198.51.100.77"  # another machine: the one a stolen token would point post-install at
MACHINE = "192.0.2.50"
MAC = "52:54:00:0a:0b:0c"


def host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def waiting_for_first_boot(client, settings, runtime) -> tuple[int, str]:
    """A Linux task on a fake node whose machine reported its installer and installed OS: it waits for
    the first boot. Returns its id and callback token."""
    (settings.effective_images_dir / "root.img").write_bytes(b"img")
    image = created(client, "images", {"name": "Linux", "osType": "linux", "imagePath": "root.img"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    task = created(client, "tasks", {"hostname": "cb-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                     "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                     "os": {"imageId": image["id"]},
                                     "postInstall": {"installAgent": True}})
    task_id = task["id"]
    with runtime.database.session() as session:
        for name in ("create_vm", "render_answers", "register_mac", "power_on"):
            assert pipeline.claim(session, task_id, name, 60).step == name
            assert pipeline.complete(session, runtime.settings, task_id, name, "done in the test")
        token = runtime.vault.decrypt(session.get(Task, task_id).callback_token_encrypted)
    for event in ("installer_started", "os_installed"):
        assert post(client, task_id, token, event).json["accepted"]
    return task_id, token


def post(client, task_id: int, token: str, event: str, source: str = "127.0.0.1", headers: dict | None = None,
         **facts):
    return client.post(STATUS, json={"taskId": task_id, "token": token, "event": event, "status": "ok", **facts},
                       environ_base={"REMOTE_ADDR": source}, headers=headers or {})


def stored_addresses(client, task_id: int) -> list[str]:
    node_id = client.get(f"{API}/tasks/{task_id}").json["resultNodeId"]
    return client.get(f"{API}/nodes/{node_id}").json["ipAddresses"] if node_id else []


def warnings(runtime, task_id: int) -> list[str]:
    with runtime.database.session() as session:
        return list(session.scalars(select(TaskLog.message).where(TaskLog.task_id == task_id,
                                                                  TaskLog.level == "warn")))


def where_post_install_goes(runtime, task_id: int) -> str:
    address, _ = reported(SimpleNamespace(database=runtime.database, task_id=task_id), "SSH")
    return address


def test_a_claim_without_the_callbacks_own_address_is_refused(client, settings, runtime, queue):
    task_id, token = waiting_for_first_boot(client, settings, runtime)
    answer = post(client, task_id, token, "first_boot", addresses=[FOREIGN],
                  ssh={"port": 22, "hostKeys": [host_key()]})
    # the event itself is authentic (the token) and completes its step; the claim is not stored
    assert answer.status_code == 200 and answer.json["accepted"] and answer.json["reason"] == "step completed"
    assert FOREIGN in answer.json["warning"] and "127.0.0.1" in answer.json["warning"]
    assert stored_addresses(client, task_id) == []
    flagged = [message for message in warnings(runtime, task_id) if FOREIGN in message]
    assert flagged and "127.0.0.1" in flagged[0], warnings(runtime, task_id)
    assert token not in " ".join(warnings(runtime, task_id))
    with pytest.raises(PermanentError, match="reported no address"):
        where_post_install_goes(runtime, task_id)  # never the claimed address


def test_a_claim_with_the_callbacks_own_address_is_stored_that_address_first(client, settings, runtime, queue):
    task_id, token = waiting_for_first_boot(client, settings, runtime)
    key = host_key()
    answer = post(client, task_id, token, "first_boot", source=MACHINE, addresses=["10.0.0.5", MACHINE],
                  ssh={"port": 2222, "hostKeys": [key]})
    assert answer.json == {"accepted": True, "reason": "step completed"}
    assert stored_addresses(client, task_id) == [MACHINE, "10.0.0.5"]  # the one seen on the wire first
    assert where_post_install_goes(runtime, task_id) == MACHINE
    node_id = client.get(f"{API}/tasks/{task_id}").json["resultNodeId"]
    assert client.get(f"{API}/nodes/{node_id}").json["sshHostKeys"] == [key]
    assert not [message for message in warnings(runtime, task_id) if "claim" in message]
    # a later report from elsewhere changes nothing of it, host keys included
    late = post(client, task_id, token, "progress", source=FOREIGN, addresses=["10.9.9.9"],
                ssh={"port": 22, "hostKeys": [host_key()]})
    assert late.json["accepted"] and "10.9.9.9" in late.json["warning"]
    assert stored_addresses(client, task_id) == [MACHINE, "10.0.0.5"]
    assert client.get(f"{API}/nodes/{node_id}").json["sshHostKeys"] == [key]


def test_each_callback_and_boot_script_request_logs_where_it_came_from(client, anonymous, settings, runtime,
                                                                        queue):
    task_id, token = waiting_for_first_boot(client, settings, runtime)
    post(client, task_id, token, "progress", source=MACHINE, message="partitioning")
    with runtime.database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name == "os_install")
                        .values(status="running"))  # back in the install window, to be served the install script
        session.get(Task, task_id).mac_address = MAC
    anonymous.get(f"{API}/pxe/boot", query_string={"mac": MAC}, environ_base={"REMOTE_ADDR": FOREIGN})
    assert flush_all()  # the boot line is written by the boot answers' background writer
    with runtime.database.session() as session:
        messages = list(session.scalars(select(TaskLog.message).where(TaskLog.task_id == task_id)))
    assert any(MACHINE in message and "progress" in message for message in messages), messages
    assert any(FOREIGN in message and "Boot script" in message for message in messages), messages


@pytest.mark.parametrize(("trusted", "forwarded", "stored"), [
    (0, FOREIGN, False),  # no proxy configured: anyone can write the header, so it is not read
    (1, FOREIGN, True),  # nginx appended the address it saw: that is the callback's source
    (1, f"{MACHINE}, {FOREIGN}", True),  # the client's own header comes first; the proxy's entry counts
    (1, f"{FOREIGN}, {MACHINE}", False),  # a forged entry in front of what nginx appended is ignored
])
def test_x_forwarded_for_is_read_only_from_trusted_proxies(client, settings, runtime, queue, trusted, forwarded,
                                                          stored):
    task_id, token = waiting_for_first_boot(client, settings, runtime)
    proxied = Runtime(settings.model_copy(update={"trusted_proxies": trusted}), runtime.database, runtime.vault)
    app = create_app(runtime=proxied)
    app.extensions[DISPATCH] = queue
    answer = post(app.test_client(), task_id, token, "first_boot", headers={"X-Forwarded-For": forwarded},
                  addresses=[FOREIGN])
    assert answer.status_code == 200 and answer.json["accepted"]
    assert stored_addresses(client, task_id) == ([FOREIGN] if stored else [])
    assert ("warning" not in answer.json) is stored
