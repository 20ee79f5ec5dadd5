"""The per-task file URL: the rendered answer files while the machine installs, and nothing of the
task's secrets before that or once the task has completed, failed or been cancelled."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import update

from octoprov import states
from octoprov.models import Task, TaskStep
from tests.support.examples import ADMIN_PASSWORD, JOIN_PASSWORD, PRODUCT_KEY

PXE = "/api/v1/provisioning/pxe"
TASKS = "/api/v1/provisioning/tasks"
MAC = "00-15-5d-0a-0b-0c"
FILES = ("autounattend.xml", "startnet.cmd", "winpeshl.ini")
READY = ["register_machine", "render_answers", "register_mac", "power_on"]


def _encodings(password: str) -> list[str]:
    return [password] + [base64.b64encode((password + suffix).encode("utf-16-le")).decode()
                         for suffix in ("AdministratorPassword", "Password")]


SECRETS = [*_encodings(ADMIN_PASSWORD), JOIN_PASSWORD, PRODUCT_KEY]


@pytest.fixture
def windows_task(client, settings):
    media = settings.effective_images_dir / "ws2025"
    (media / "sources").mkdir(parents=True)
    (media / "Boot").mkdir()
    for name in ("sources/boot.wim", "Boot/BCD", "Boot/boot.sdi", "install.wim"):
        (media / name).write_bytes(b"x")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "WS2025", "osType": "windows", "imagePath": "ws2025/install.wim",
        "bootWimPath": "ws2025/sources/boot.wim"}).json["id"]
    response = client.post(TASKS, json={
        "hostname": "SQL-SERVER-02", "targetType": "baremetal", "macAddress": MAC,
        "os": {"imageId": image, "adminPassword": ADMIN_PASSWORD, "productKey": PRODUCT_KEY},
        "domain": {"join": True, "name": "yourdom.local", "method": "online",
                   "serviceAccount": {"username": "YOURDOM\\svc-join", "password": JOIN_PASSWORD}}})
    assert response.status_code == 201, response.json
    return response.json["id"]


def _steps(database, task_id, names, status="done"):
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name.in_(names))
                        .values(status=status))


def _token(database, runtime, task_id) -> str:
    with database.session() as session:
        return runtime.vault.decrypt(session.get(Task, task_id).files_token_encrypted)


def _fetch_all(anonymous, token) -> dict[str, object]:
    return {name: anonymous.get(f"{PXE}/files/{token}/{name}") for name in FILES}


def _assert_nothing_secret(responses):
    for name, response in responses.items():
        assert response.status_code == 404, (name, response.status_code)
        body = response.get_data(as_text=True)
        assert not [secret for secret in SECRETS if secret in body], name


def test_files_are_served_only_while_the_machine_installs(anonymous, database, runtime, windows_task):
    token = _token(database, runtime, windows_task)
    _assert_nothing_secret(_fetch_all(anonymous, token))  # boot configuration not ready yet
    _steps(database, windows_task, READY)
    served = _fetch_all(anonymous, token)
    assert all(response.status_code == 200 for response in served.values())
    xml = served["autounattend.xml"].get_data(as_text=True)
    assert _encodings(ADMIN_PASSWORD)[1] in xml and JOIN_PASSWORD in xml and PRODUCT_KEY in xml
    assert served["autounattend.xml"].headers["Cache-Control"] == "no-store"
    assert "net use Z:" in served["startnet.cmd"].get_data(as_text=True)
    assert served["winpeshl.ini"].get_data(as_text=True).startswith("[LaunchApps]\r\n")
    assert anonymous.get(f"{PXE}/files/{token}/kickstart.cfg").status_code == 404
    assert anonymous.get(f"{PXE}/files/{token}/../../secret.key").status_code == 404
    _steps(database, windows_task, ["installer_started", "os_install"])
    _assert_nothing_secret(_fetch_all(anonymous, token))  # installed: WinPE is done with them


@pytest.mark.parametrize("final", [states.COMPLETED, states.FAILED])
def test_nothing_is_served_once_the_task_has_ended(anonymous, database, runtime, windows_task, final):
    token = _token(database, runtime, windows_task)
    _steps(database, windows_task, READY)
    assert anonymous.get(f"{PXE}/files/{token}/autounattend.xml").status_code == 200
    with database.session() as session:
        session.execute(update(Task).where(Task.id == windows_task).values(status=final))
    _assert_nothing_secret(_fetch_all(anonymous, token))


def test_nothing_is_served_once_the_task_is_cancelled(anonymous, client, database, runtime, windows_task):
    token = _token(database, runtime, windows_task)
    _steps(database, windows_task, READY)
    assert anonymous.get(f"{PXE}/files/{token}/startnet.cmd").status_code == 200
    assert client.delete(f"{TASKS}/{windows_task}").status_code in (200, 202, 204)
    assert client.get(f"{TASKS}/{windows_task}").json["status"] == states.CANCELLED
    _assert_nothing_secret(_fetch_all(anonymous, token))


def test_management_views_never_show_the_secrets(client, windows_task):
    shown = str(client.get(f"{TASKS}/{windows_task}").json) + str(client.get(f"{TASKS}/{windows_task}/logs").json)
    assert not [secret for secret in SECRETS if secret in shown]


def test_a_file_that_cannot_be_made_is_a_409_the_task_log_explains(anonymous, client, database, runtime, settings):
    (settings.effective_images_dir / "a.wim").write_bytes(b"x")
    image = client.post("/api/v1/provisioning/images", json={"name": "x", "osType": "windows",
                                                             "imagePath": "a.wim"}).json["id"]
    task = client.post(TASKS, json={"hostname": "NOPW-01", "targetType": "baremetal",
                                    "macAddress": "00:15:5d:0a:0b:0d", "os": {"imageId": image}}).json["id"]
    _steps(database, task, READY)
    token = _token(database, runtime, task)
    response = anonymous.get(f"{PXE}/files/{token}/autounattend.xml")
    assert response.status_code == 409 and "os.adminPassword" in response.json["message"]
    assert anonymous.get(f"{PXE}/files/{token}/startnet.cmd").status_code == 200  # the others are still made
    logs = client.get(f"{TASKS}/{task}/logs").json
    assert any(entry["level"] == "error" and "os.adminPassword" in entry["message"] for entry in logs)


def test_render_answers_fails_a_real_task_whose_files_cannot_be_made(client, database, runtime, settings):
    """The render_answers step renders every file: a bare-metal Windows task without a password fails
    there, naming the field, before any machine boots; with the password it names the files."""
    from octoprov.answerfiles.files import check_task_files
    from octoprov.context import load_context
    from octoprov.errors import PermanentError

    (settings.effective_images_dir / "a.wim").write_bytes(b"x")
    image = client.post("/api/v1/provisioning/images", json={"name": "x", "osType": "windows",
                                                             "imagePath": "a.wim"}).json["id"]
    body = {"hostname": "NOPW-02", "targetType": "baremetal", "macAddress": "00:15:5d:0a:0b:0e",
            "os": {"imageId": image}}
    without = client.post(TASKS, json=body).json["id"]
    body.update(hostname="PW-02", macAddress="00:15:5d:0a:0b:0f", os={"imageId": image, "adminPassword": "S3cret!x"})
    with_password = client.post(TASKS, json=body).json["id"]
    context_args = (runtime.settings, runtime.database, runtime.vault)  # what a worker loads a step's context with
    with database.session() as session:
        with pytest.raises(PermanentError, match=r"autounattend\.xml: os\.adminPassword"):
            check_task_files(session.connection(), load_context(session, without, *context_args))
        detail = check_task_files(session.connection(), load_context(session, with_password, *context_args))
    assert detail.startswith("autounattend.xml, startnet.cmd, winpeshl.ini ready"), detail
