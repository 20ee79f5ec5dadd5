"""The PXE side of the API: chain script, per-MAC boot scripts (iPXE or JSON), boot files with Range."""

from __future__ import annotations

import dataclasses

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import update

from api import create_app
from octoprov.db import Database
from octoprov.models import Task, TaskStep
from octoprov.netboot import answercache, service
from octoprov.netboot.chain import BootChain
from octoprov.netboot.ipxe import UnsafeValue, ipxe_args, ipxe_comment, ipxe_word
from tests.support.library import tiny_linux_image

PXE = "/api/v1/provisioning/pxe"
MAC = "52:54:00:c0:ff:ee"


@pytest.fixture
def linux_image(client, settings):
    return tiny_linux_image(client, settings.effective_images_dir, "console=ttyS0 quiet")


def _baremetal(client, image_id, mac=MAC):
    response = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "tiny-01", "targetType": "baremetal", "macAddress": mac, "os": {"imageId": image_id}})
    assert response.status_code == 201, response.json
    return response.json


def _set_steps(database, task_id, done: list[str]):
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name.in_(done))
                        .values(status="done"))


def test_chain_script_asks_for_the_machines_boot_script(anonymous):
    response = anonymous.get(f"{PXE}/chain.ipxe")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    script = response.get_data(as_text=True)
    assert script.startswith("#!ipxe\n")
    assert "/api/v1/provisioning/pxe/boot?mac=${net0/mac:hexhyp}&uuid=${uuid}" in script
    assert "${manufacturer:uristring}" in script and "sanboot --no-describe --drive 0x80" in script
    named = anonymous.get(f"{PXE}/chain.ipxe", query_string={"mac": "52:54:00:C0:FF:EE"}).get_data(as_text=True)
    assert "/api/v1/provisioning/pxe/boot?mac=52-54-00-c0-ff-ee&uuid=${uuid}" in named
    assert anonymous.get(f"{PXE}/chain.ipxe", query_string={"mac": "${evil}"}).status_code == 400


def test_unknown_mac_boots_locally(anonymous):
    script = anonymous.get(f"{PXE}/boot", query_string={"mac": "52-54-00-12-34-56"}).get_data(as_text=True)
    assert script.startswith("#!ipxe\n") and "No provisioning task for this MAC" in script
    assert "exit" in script and "sanboot" in script
    document = anonymous.get(f"{PXE}/boot", query_string={"mac": "525400123456"},
                             headers={"Accept": "application/json"}).json
    assert document == {"action": "localboot", "message": "No provisioning task for this MAC"}


@pytest.mark.parametrize("mac", ["", "52:54:00", "zz-zz-zz-zz-zz-zz"])
def test_bad_mac_is_a_400(anonymous, mac):
    response = anonymous.get(f"{PXE}/boot", query_string={"mac": mac})
    assert response.status_code == 400 and "mac" in response.json["errors"]


def test_linux_install_script_while_installing_then_local_boot(anonymous, client, database, runtime, linux_image):
    task = _baremetal(client, linux_image)
    early = anonymous.get(f"{PXE}/boot", query_string={"mac": "52-54-00-c0-ff-ee"}).get_data(as_text=True)
    assert f"Task {task['id']} is at step Register machine" in early  # boot configuration not ready yet
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    response = anonymous.get(f"{PXE}/boot", query_string={
        "mac": "52-54-00-c0-ff-ee", "manufacturer": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)"})
    script = response.get_data(as_text=True)
    with database.session() as session:
        stored = session.get(Task, task["id"])
        token = runtime.vault.decrypt(stored.callback_token_encrypted)
        assert stored.hardware == {"manufacturer": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)"}
    base = runtime.settings.effective_public_url
    assert f"kernel {base}/boot/images/tiny/vmlinuz initrd=initrd console=ttyS0 quiet octoprov.task={task['id']} " \
           f"octoprov.callback={base}/api/v1/provisioning/pxe/status octoprov.token={token}" in script
    assert f"initrd --name initrd {base}/boot/images/tiny/initrd.gz" in script
    document = anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}, headers={"Accept": "application/json"}).json
    assert document["action"] == "install" and document["taskId"] == task["id"]
    assert document["files"]["kernel"].endswith("/boot/images/tiny/vmlinuz")
    _set_steps(database, task["id"], ["installer_started", "os_install"])
    after = anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}).get_data(as_text=True)
    assert "the OS is installed" in after and "kernel" not in after  # a finished machine never reinstalls


def test_windows_install_script_uses_wimboot_and_injects_the_tasks_files(anonymous, client, database, runtime,
                                                                         settings):
    media = settings.effective_images_dir / "winpe"
    (media / "sources").mkdir(parents=True)
    (media / "Boot").mkdir()
    for name in ("sources/boot.wim", "Boot/BCD", "Boot/boot.sdi", "install.wim"):
        (media / name).write_bytes(b"x")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "WS2025", "osType": "windows", "imagePath": "winpe/install.wim",
        "bootWimPath": "winpe/sources/boot.wim"}).json["id"]
    task = _baremetal(client, image, mac="00-15-5D-01-02-03")
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    script = anonymous.get(f"{PXE}/boot", query_string={"mac": "00-15-5d-01-02-03"}).get_data(as_text=True)
    base = runtime.settings.effective_public_url + "/boot/images/"
    assert f"kernel {base}wimboot" in script
    assert f"initrd {base}winpe/Boot/BCD BCD" in script and f"initrd {base}winpe/Boot/boot.sdi boot.sdi" in script
    assert f"initrd {base}winpe/sources/boot.wim boot.wim" in script
    with database.session() as session:
        files_token = runtime.vault.decrypt(session.get(Task, task["id"]).files_token_encrypted)
    assert f"/api/v1/provisioning/pxe/files/{files_token}/autounattend.xml autounattend.xml" in script
    assert anonymous.get(f"{PXE}/files/not-the-token/autounattend.xml").status_code == 404


@pytest.mark.parametrize("bad", ["a b", "x${net0/mac}", "a||b", "a&&b", "line\nbreak", ""])
def test_ipxe_word_refuses_what_would_change_the_script(bad):
    with pytest.raises(UnsafeValue):
        ipxe_word(bad)


@pytest.mark.parametrize("bad", ["${x}", "a;b", "a|b", "quote\"d", "new\nline"])
def test_kernel_args_refuse_script_syntax(bad):
    with pytest.raises(UnsafeValue):
        ipxe_args(bad)


def test_comments_cannot_break_out():
    assert "\n" not in ipxe_comment("a\nkernel evil") and "${" not in ipxe_comment("${evil}")


def test_image_with_script_syntax_in_kernel_args_is_refused(client, settings):
    (settings.effective_images_dir / "k").write_bytes(b"k")
    response = client.post("/api/v1/provisioning/images", json={
        "name": "x", "osType": "linux", "imagePath": "k", "kernelPath": "k", "initrdPath": "k",
        "kernelArgs": "quiet ${evil} || shell"})
    assert response.status_code == 400 and "kernelArgs" in response.json["errors"]


def test_boot_files_with_range_and_without_escape(anonymous, settings, tmp_path):
    data = bytes(range(256)) * 64
    (settings.effective_images_dir / "big.wim").write_bytes(data)
    whole = anonymous.get("/boot/images/big.wim")
    assert whole.status_code == 200 and whole.data == data
    part = anonymous.get("/boot/images/big.wim", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    suffix = anonymous.get("/boot/images/big.wim", headers={"Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.data == data[-100:]
    open_ended = anonymous.get("/boot/images/big.wim", headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_ended.data == data[-10:]
    beyond = anonymous.get("/boot/images/big.wim", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    several = anonymous.get("/boot/images/big.wim", headers={"Range": "bytes=0-9,20-29"})
    assert several.status_code == 200 and several.data == data  # several ranges: the whole file
    (tmp_path / "secret").write_text("x")
    (settings.effective_images_dir / "link").symlink_to(tmp_path / "secret")
    for path in ("../octoprov.sqlite", "link", "", "%2e%2e/secret.key"):
        assert anonymous.get(f"/boot/images/{path}").status_code == 404, path
    (settings.effective_images_dir / "folder").mkdir()
    assert anonymous.get("/boot/images/folder").status_code == 404  # no listing


def test_unknown_machines_get_the_menu_when_enabled(runtime, token):
    from api import create_app

    settings = runtime.settings.__class__(data_dir=runtime.settings.data_dir, secret_key=runtime.settings.secret_key,
                                          boot_unknown_machines=True)
    app = create_app(runtime=runtime.__class__(settings, runtime.database, runtime.vault))
    script = app.test_client().get(f"{PXE}/boot", query_string={"mac": "52:54:00:aa:bb:cc"}).get_data(as_text=True)
    assert script.startswith("#!ipxe\n") and "menu Octoprov PXE boot: no task for 52-54-00-aa-bb-cc" in script
    assert "chain --replace http://127.0.0.1:8080/api/v1/provisioning/pxe/chain.ipxe?mac=52-54-00-aa-bb-cc" in script


IPXE = {"User-Agent": "iPXE/1.21.1+ (g988d2)"}  # what iPXE's HTTP client always sends


def test_smbios_plus_signs_arrive_as_ipxe_sent_them(anonymous, client, database, linux_image):
    """iPXE's ${product:uristring} leaves `+` unencoded: the raw query string below is what QEMU's
    i440FX machine sends. The stored product must be the SMBIOS string, which KVM_MODELS spells."""
    from octoprov.drivers import KVM_MODELS

    task = _baremetal(client, linux_image)

    def product(query: str, headers: dict) -> str:
        assert anonymous.get(f"{PXE}/boot?mac=52-54-00-c0-ff-ee&{query}", headers=headers).status_code == 200
        with database.session() as session:
            return session.get(Task, task["id"]).hardware["product"]

    raw = ("uuid=8b1c2d3e-0000-4000-8000-000000000001&manufacturer=QEMU"
           "&product=Standard%20PC%20(i440FX%20+%20PIIX,%201996)&platform=pcbios&arch=i386")
    assert product(raw, IPXE) == KVM_MODELS[1][1]
    with database.session() as session:
        assert session.get(Task, task["id"]).hardware["manufacturer"] == KVM_MODELS[1][0]
    assert product("product=A%2BB%20C", IPXE) == "A+B C"  # %2B is a plus too, %20 a space
    # a browser or curl with a form-encoded query: there `+` is a space, as everywhere else in the API
    assert product("product=Standard+PC+(Q35+%2B+ICH9,+2009)", {"User-Agent": "curl/8.5.0"}) == KVM_MODELS[2][1]


def _not_dispatched():
    raise AssertionError("this request was to be answered before Flask's dispatch")


def test_boot_scripts_are_served_before_flask_as_the_route_serves_them(app, anonymous, client, database, linux_image,
                                                                       monkeypatch):
    """api.fastboot answers GET /pxe/boot in front of the Flask app: the same status, headers and script as the
    route, counted as the route's requests are; what asks for JSON or fails is the route's to answer."""
    from flask import Flask
    from werkzeug.test import Client

    from api.fastboot import BOOT_PATH

    assert BOOT_PATH in {rule.rule for rule in app.url_map.iter_rules()}  # counted under the route's rule
    route = Client(lambda environ, start_response: Flask.wsgi_app(app, environ, start_response))  # Flask alone
    task = _baremetal(client, linux_image)
    smbios = "uuid=8b1c2d3e-0000-4000-8000-000000000001&manufacturer=QEMU&product=Standard%20PC%20(i440FX%20+%20PIIX)"
    asked = 0

    def same(query: str, headers: dict) -> str:
        nonlocal asked
        routed = route.get(f"{PXE}/boot?{query}", headers=headers)
        with monkeypatch.context() as patched:
            patched.setattr(app, "full_dispatch_request", _not_dispatched)
            fast = anonymous.get(f"{PXE}/boot?{query}", headers=headers)
        assert (fast.status, list(fast.headers), fast.data) == (routed.status, list(routed.headers), routed.data)
        asked += 2
        return fast.get_data(as_text=True)

    assert "Register machine" in same(f"mac={MAC}", {})
    assert "No provisioning task" in same("mac=52-54-00-12-34-56", IPXE)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    assert "kernel" in same(f"mac={MAC.upper()}&{smbios}", IPXE)
    assert "kernel" in same(f"mac={MAC}", {"Accept": "*/*"})
    with database.session() as session:
        assert session.get(Task, task["id"]).hardware["product"] == "Standard PC (i440FX + PIIX)"
    registry = app.extensions["octoprov.metrics"].registry
    assert registry.get_sample_value("octoprov_api_request_duration_seconds_count",
                                     {"route": BOOT_PATH, "method": "GET", "status": "200"}) == asked

    with monkeypatch.context() as patched:  # the route's own answers: JSON, errors, other methods
        dispatched = []
        patched.setattr(app, "full_dispatch_request", lambda: dispatched.append(1) or Flask.full_dispatch_request(app))
        assert anonymous.get(f"{PXE}/boot", query_string={"mac": MAC},
                             headers={"Accept": "application/json"}).json["action"] == "install"
        assert anonymous.get(f"{PXE}/boot", query_string={"mac": "zz"}).status_code == 400
        assert anonymous.head(f"{PXE}/boot", query_string={"mac": MAC}).status_code == 200
        assert anonymous.post(f"{PXE}/boot", query_string={"mac": MAC}).status_code == 405
        assert len(dispatched) == 4


def test_a_boot_behind_a_trusted_proxy_is_logged_with_the_machines_address(client, database, runtime, linux_image):
    from octoprov.runtime import Runtime

    task = _baremetal(client, linux_image)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    proxied = Runtime(runtime.settings.model_copy(update={"trusted_proxies": 1}), runtime.database, runtime.vault)
    script = create_app(runtime=proxied).test_client().get(f"{PXE}/boot", query_string={"mac": MAC},
                                                            headers={"X-Forwarded-For": "192.0.2.77"})
    assert "kernel" in script.get_data(as_text=True)
    assert "at 192.0.2.77:" in _pxe_log(database, task["id"])[-1]


def _pxe_log(database, task_id) -> list[str]:
    """The task's boot lines, once this process's boot-line writer has written what it was given."""
    from sqlalchemy import select

    from octoprov.models import TaskLog
    from octoprov.netboot.answercache import flush_all

    assert flush_all()
    with database.session() as session:
        return list(session.scalars(select(TaskLog.message).where(TaskLog.task_id == task_id, TaskLog.step == "pxe")
                                    .order_by(TaskLog.id)))


def test_a_task_outside_its_install_window_says_where_it_is(anonymous, client, database, linux_image):
    task = _baremetal(client, linux_image)
    early = anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}, headers={"Accept": "application/json"}).json
    assert early["action"] == "localboot"
    assert early["message"].startswith(f"Task {task['id']} is at step Register machine;"), early
    assert "until its boot configuration is ready" in early["message"] and "(" not in early["message"]
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on",
                                      "installer_started", "os_install"])
    script = anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}).get_data(as_text=True)
    assert f"Task {task['id']} is at step First boot; the OS is installed" in script, script


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_mac_whose_tasks_ended_is_told_about_its_last_task(anonymous, client, database, linux_image, status):
    first, last = _baremetal(client, linux_image), _baremetal(client, linux_image)
    with database.session() as session:
        session.execute(update(Task).where(Task.id.in_([first["id"], last["id"]])).values(status=status))
    document = anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}, headers={"Accept": "application/json"}).json
    assert document["action"] == "localboot"
    assert f"its last task {last['id']} is {status}" in document["message"], document
    assert "new task" in document["message"] and "No provisioning task" not in document["message"]


def test_a_change_of_boot_answer_is_logged_at_once_a_repeat_is_not(anonymous, client, database, linux_image):
    task = _baremetal(client, linux_image)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    for _ in range(3):  # firmware retries: one line
        assert "kernel" in anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}).get_data(as_text=True)
    assert len(_pxe_log(database, task["id"])) == 1
    _set_steps(database, task["id"], ["installer_started", "os_install"])
    for _ in range(3):  # seconds later the installed machine reboots: the local-boot answer is logged too
        assert "sanboot" in anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}).get_data(as_text=True)
    logged = _pxe_log(database, task["id"])
    assert len(logged) == 2, logged
    assert "install" in logged[0] and "localboot" in logged[1] and "First boot" in logged[1], logged
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name == "os_install")
                        .values(status="running"))
    anonymous.get(f"{PXE}/boot", query_string={"mac": MAC})  # and back (a retried install): logged again
    assert len(_pxe_log(database, task["id"])) == 3


def test_grub_configuration_for_a_secure_boot_machine_matches_the_ipxe_script(anonymous, client, database, runtime,
                                                                             linux_image):
    """The signed GRUB's configuration: the same kernel, arguments and callback as the iPXE script, the files
    from the TFTP server's images/ folder; local boot outside the install window; what the TFTP server renders."""
    task = _baremetal(client, linux_image)
    early = anonymous.get(f"{PXE}/boot.grub", query_string={"mac": MAC}).get_data(as_text=True)
    assert early.splitlines()[-1] == "exit" and "linux" not in early
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    config = anonymous.get(f"{PXE}/boot.grub", query_string={"mac": "52-54-00-C0-FF-EE"}).get_data(as_text=True)
    with database.session() as session:
        token = runtime.vault.decrypt(session.get(Task, task["id"]).callback_token_encrypted)
    base = runtime.settings.effective_public_url
    assert (f"linux '/images/tiny/vmlinuz' 'console=ttyS0' 'quiet' 'octoprov.task={task['id']}' "
            f"'octoprov.callback={base}/api/v1/provisioning/pxe/status' 'octoprov.token={token}'") in config
    assert "initrd '/images/tiny/initrd.gz'" in config
    rendered = service.grub_configs(database, runtime.settings, runtime.vault)
    assert rendered(f"grub/octoprov/{MAC}.cfg", "198.51.100.123") == config.encode()
    assert rendered("ipxe.efi", "198.51.100.123") is None  # not a machine file: the TFTP root serves it
    assert any(f"GRUB configuration served to {MAC} at 198.51.100.123 over TFTP: install" in line
               for line in _pxe_log(database, task["id"]))
    _set_steps(database, task["id"], ["installer_started", "os_install"])
    after = anonymous.get(f"{PXE}/boot.grub", query_string={"mac": MAC}).get_data(as_text=True)
    assert "the OS is installed" in after and "linux" not in after and after.splitlines()[-1] == "exit"
    assert anonymous.get(f"{PXE}/boot.grub", query_string={"mac": "ff:ff:ff:ff:ff:ff"}).status_code == 400


def test_secure_boot_chain_is_the_targets_policy(client, database, linux_image):
    """ProxyDHCP's lookup: a bare-metal machine registered with secureBoot gets the signed chain; a VM task
    follows vm.secureboot; a MAC without an active task gets nothing."""
    lookup = service.chain_lookup(database)
    assert lookup(MAC) is None
    _baremetal(client, linux_image)
    assert lookup(MAC) is BootChain.IPXE
    response = client.post("/api/v1/provisioning/machines", json={"name": "sb-1", "macAddresses": [MAC],
                                                                  "secureBoot": True})
    assert response.status_code == 201, response.json
    assert response.json["secureBoot"] is True
    assert lookup(MAC) is BootChain.SIGNED
    machine = client.get(f"/api/v1/provisioning/machines/{response.json['id']}").json
    assert machine["secureBoot"] is True


def test_efi_loaders_for_http_boot_by_name_only(runtime, tmp_path):
    ipxe_dir = tmp_path / "ipxe"
    ipxe_dir.mkdir()
    (ipxe_dir / "ipxe.efi").write_bytes(b"MZ ipxe" * 100)
    settings = runtime.settings.model_copy(update={"ipxe_dir": ipxe_dir, "signed_boot_dir": tmp_path / "none"})
    anonymous = create_app(runtime=dataclasses.replace(runtime, settings=settings)).test_client()
    response = anonymous.get("/boot/efi/ipxe.efi")
    assert response.status_code == 200 and response.data == b"MZ ipxe" * 100
    for name in ("snponly.efi", "shimx64.efi", "undionly.kpxe", "..%2Fipxe%2Fipxe.efi", "grub.cfg"):
        assert anonymous.get(f"/boot/efi/{name}").status_code == 404, name


def test_a_batch_of_boot_lines_keeps_one_line_a_task_and_message(client, database, linux_image):
    """The boot-line writer's batch (record_boots): repeats within a minute dropped, a changed message kept at
    once, in order, per task; lines of a task that no longer exists dropped."""
    from sqlalchemy import select

    from octoprov.models import TaskLog
    from octoprov.netboot.bootconfig import record_boots

    first = _baremetal(client, linux_image)["id"]
    second = _baremetal(client, linux_image, mac="52:54:00:c0:ff:ef")["id"]
    with database.session() as session:
        record_boots(session, [(first, "install"), (second, "install"), (first, "install"), (999999, "install"),
                               (first, "localboot"), (first, "localboot"), (second, "install")])
    with database.session() as session:
        record_boots(session, [(first, "localboot"), (second, "install"), (second, "localboot")])
    with database.session() as session:
        logged = session.execute(select(TaskLog.task_id, TaskLog.message).where(TaskLog.step == "pxe")
                                 .order_by(TaskLog.id)).all()
    assert [tuple(row) for row in logged] == [(first, "install"), (second, "install"), (first, "localboot"),
                                              (second, "localboot")]


def test_a_kept_answer_reads_no_stamp_until_something_is_committed(anonymous, client, database, runtime, linux_image,
                                                                   monkeypatch):
    """SQLite: while no connection of any process commits (PRAGMA data_version), a kept answer is served without
    reading its MAC's stamp; any commit, even one that changes no answer, makes the next request read it again,
    and a change of the task's steps is answered at once. PostgreSQL: the stamp is read on every request."""
    from octoprov.models import ApiToken
    from octoprov.netboot.answercache import ChangeClock, boot_answers

    clock = ChangeClock(database.engine)
    if database.engine.dialect.name != "sqlite":
        assert clock.now() is None
    else:
        seen = clock.now()
        assert seen is not None and clock.now() == seen
        with database.session() as session:
            session.add(ApiToken(name="clock", token_hash="0" * 64))
        assert clock.now() == seen + 1 and clock.now() == seen + 1
    task = _baremetal(client, linux_image)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    answers = boot_answers(runtime.database, runtime.settings, runtime.vault)
    read = []
    stamp = answers._stamp
    monkeypatch.setattr(answers, "_stamp", lambda mac: read.append(mac) or stamp(mac))

    def script() -> str:
        return anonymous.get(f"{PXE}/boot", query_string={"mac": MAC}).get_data(as_text=True)

    assert "kernel" in script()
    from octoprov.netboot.answercache import flush_all

    assert flush_all()  # the boot line is written: a commit
    before = len(read)
    assert "kernel" in script() and "kernel" in script()
    sqlite = database.engine.dialect.name == "sqlite"
    assert len(read) - before == (1 if sqlite else 2)  # the first request after the boot line's commit
    with database.session() as session:
        session.add(ApiToken(name="unrelated", token_hash="1" * 64))
    assert "kernel" in script()
    assert len(read) - before == (2 if sqlite else 3)
    _set_steps(database, task["id"], ["installer_started", "os_install"])
    assert "sanboot" in script()


def test_answers_are_rendered_ahead_once_their_task_has_settled(client, database, runtime, linux_image, monkeypatch):
    """The warmer renders every active task's answer on its first round; a task that changes is noted and its
    answer rendered again only once it has not changed for WARM_SETTLE_S, with the stamp of its latest change."""
    cache = answercache.BootAnswers(runtime.database, runtime.settings, runtime.vault)
    task = _baremetal(client, linux_image)
    changed: dict[str, float] = {}
    newest = cache._warm_once(None, changed)
    first = cache._entries[MAC]
    assert first.answer.action == "localboot" and first.stamp == cache._stamp(MAC)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    newest = cache._warm_once(newest, changed)
    assert MAC in changed and cache._entries[MAC] is first  # changed just now: not rendered yet
    changed[MAC] -= answercache.WARM_SETTLE_S  # as if that long had passed with no other change
    cache._warm_once(newest, changed)
    assert changed == {}
    again = cache._entries[MAC]
    assert again.answer.action == "install" and again.stamp == cache._stamp(MAC) != first.stamp


def test_answers_of_tasks_that_ended_are_not_rendered_ahead(client, database, runtime, linux_image):
    """A task that ended (here cancelled) is left to the request that may come, long after: the warmer does not
    note it, and the very next request still gets the answer of its new state."""
    cache = answercache.BootAnswers(runtime.database, runtime.settings, runtime.vault)
    task = _baremetal(client, linux_image)
    _set_steps(database, task["id"], ["register_machine", "render_answers", "register_mac", "power_on"])
    changed: dict[str, float] = {}
    newest = cache._warm_once(None, changed)
    assert cache._entries[MAC].answer.action == "install"
    assert client.delete(f"/api/v1/provisioning/tasks/{task['id']}").status_code == 200
    cache._warm_once(newest, changed)
    assert changed == {} and cache._entries[MAC].answer.action == "install"  # kept, under its old stamp
    assert cache.answer(MAC, {})[0].action != "install"


def test_answers_of_the_fake_targets_tasks_are_not_rendered_ahead(client, database, runtime, linux_image):
    """The fake target's machines ask for no answers: the warmer leaves its tasks out, a real target's it takes."""
    node = client.post("/api/v1/provisioning/hypervisors", json={"name": "LAB", "kind": "fake", "endpoint": "fake://"})
    assert node.status_code == 201, node.json
    fake = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "fake-01", "targetType": "fake", "hypervisorNodeId": node.json["id"],
        "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]}, "os": {"imageId": linux_image}})
    assert fake.status_code == 201, fake.json
    fake_mac = "02:00:00:00:00:01"
    with database.session() as session:
        session.execute(update(Task).where(Task.id == fake.json["id"]).values(mac_address=fake_mac))
    _baremetal(client, linux_image)
    cache = answercache.BootAnswers(runtime.database, runtime.settings, runtime.vault)
    cache._warm_once(None, {})
    assert MAC in cache._entries and fake_mac not in cache._entries


def test_stamps_of_many_macs_are_those_of_each(client, database, runtime, linux_image):
    _baremetal(client, linux_image)
    cache = answercache.BootAnswers(runtime.database, runtime.settings, runtime.vault)
    with runtime.database.engine.connect() as connection:
        stamps = answercache.stamps_of(connection, [MAC, "52:54:00:00:00:01"])
    assert stamps == {MAC: cache._stamp(MAC), "52:54:00:00:00:01": (0, None)}
    assert stamps[MAC][0] >= 1


def test_a_stamp_read_leaves_its_connection_idle_and_its_statement_prepared(client, database, runtime, linux_image):
    """The request path's read leaves no transaction open, and on PostgreSQL runs alone (autocommit): the pool's
    rollback on return would make psycopg forget every statement it prepared on the connection, so the read
    would be parsed and planned anew on every request of a storm."""
    _baremetal(client, linux_image)
    own = Database(runtime.database.url)  # one pooled connection, reused by each read
    try:
        read = answercache.StampReader(own.engine)
        stamps = {read(MAC) for _ in range(8)}
        assert len(stamps) == 1 and next(iter(stamps))[0] >= 1
        connection = own.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if own.engine.dialect.name == "postgresql":
                assert connection.dbapi_connection.info.transaction_status == TransactionStatus.IDLE
                cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%task_events%'")
                assert cursor.fetchone()[0] == 1
            else:
                assert not connection.dbapi_connection.in_transaction
            cursor.close()
        finally:
            connection.close()
        assert own.engine.pool.checkedin() == 1
    finally:
        own.dispose()
