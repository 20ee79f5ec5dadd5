"""Kickstart for Anaconda installs: valid for pykickstart's ksvalidator, callbacks with the token,
the root password only as a SHA-512 crypt hash."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from octoprov.answerfiles.inputs import ImageInfo
from octoprov.answerfiles.kickstart import kickstart_for, uses_kickstart
from octoprov.answerfiles.passwords import sha512_crypt
from octoprov.answerfiles.render import ks_quote
from octoprov.errors import InvalidRequest
from tests.support.answer_inputs import TOKEN, inputs_for, make_settings
from tests.support.examples import STATIC_NETWORK

KSVALIDATOR = Path(sys.executable).with_name("ksvalidator")
ROCKY = ImageInfo(7, "Rocky 9", "linux", "x64", "rocky9/root.img", 1,
                  kernel_args="inst.repo=http://192.0.2.10:8080/boot/images/rocky9/ inst.text")
BODY = {"hostname": "web-01", "targetType": "kvm", "hypervisorNodeId": 1,
        "vm": {"disks": [{"sizeGb": 20, "purpose": "os"}]},
        "os": {"imageId": 7, "language": "de-DE", "timezone": "W. Europe Standard Time", "adminPassword": "R00t-pw!"}}


def render(body=BODY, **changes) -> str:
    inputs = inputs_for(body, os_type="linux", image=ROCKY, mac="52:54:00:12:34:56", blob=None, **changes)
    return kickstart_for(inputs, make_settings(), salt="saltsaltsaltsalt").render()


def validate(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "ks.cfg"
    path.write_text(text)
    return subprocess.run([str(KSVALIDATOR), "-e", "-v", "RHEL9", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("network", [{"mode": "dhcp"}, STATIC_NETWORK], ids=["dhcp", "static"])
def test_ksvalidator_accepts_it(tmp_path, network):
    text = render({**BODY, "network": network})
    result = validate(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lang de_DE.UTF-8" in text and "keyboard --xlayouts=de" in text and "timezone Europe/Berlin --utc" in text


def test_ksvalidator_would_catch_a_broken_file(tmp_path):
    assert validate(tmp_path, render().replace("autopart --type=lvm", "autopart --type=bogus")).returncode != 0


def test_network_lines():
    assert ("network --bootproto=dhcp --device=52:54:00:12:34:56 --hostname=web-01 --onboot=yes --activate"
            in render())
    static = render({**BODY, "network": STATIC_NETWORK})
    assert ("network --bootproto=static --device=52:54:00:12:34:56 --ip=198.51.100.50 --netmask=255.255.255.0 "
            "--gateway=198.51.100.1 --nameserver=198.51.100.10,198.51.100.11 --hostname=web-01") in static


def test_root_password_is_a_sha512_crypt_hash(tmp_path):
    text = render()
    assert "R00t-pw!" not in text
    expected = subprocess.run(["openssl", "passwd", "-6", "-salt", "saltsaltsaltsalt", "R00t-pw!"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert f"rootpw --iscrypted {ks_quote(expected)}" in text
    without = {**BODY, "os": {k: v for k, v in BODY["os"].items() if k != "adminPassword"}}
    assert "rootpw --lock" in render(without)


@pytest.mark.parametrize("password", ["x", "Pa55word!", "ä" * 70, "a" * 64, "pässwörd with spaces"])
def test_sha512_crypt_matches_openssl(password):
    expected = subprocess.run(["openssl", "passwd", "-6", "-salt", "0123456789abcdef", password],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert sha512_crypt(password, "0123456789abcdef") == expected
    assert sha512_crypt(password).startswith("$6$") and sha512_crypt(password) != sha512_crypt(password)


def test_callbacks_carry_the_token_in_valid_json():
    text = render()
    bodies = [json.loads(shlex.split(line)[shlex.split(line).index("-d") + 1])
              for line in text.splitlines() if line.strip().startswith("curl ") and '"$body"' not in line]
    # the first boot's report is put together on the machine, with its addresses and host keys
    line = next(line for line in text.splitlines() if line.startswith("body=$(printf "))
    script = ('addresses=\'"198.51.100.7","fe80::1"\'; keys=\'"ssh-ed25519 AAAAC3Nz"\'; '
              + line + '; printf %s "$body"')
    bodies.append(json.loads(subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                            check=True).stdout))
    assert [body["event"] for body in bodies] == ["installer_started", "os_installed", "first_boot"]
    assert all(body["token"] == TOKEN and body["taskId"] == 42 for body in bodies)
    assert bodies[-1]["addresses"] == ["198.51.100.7", "fe80::1"]
    assert bodies[-1]["ssh"] == {"port": 22, "hostKeys": ["ssh-ed25519 AAAAC3Nz"]}
    assert "sshkey --username=root 'ssh-ed25519 " in text  # Octoprov's deploy key
    assert "http://192.0.2.10:8080/api/v1/provisioning/pxe/status" in text
    assert text.index("%post --nochroot") < text.index("os_installed")


def test_the_os_disk_is_chosen_by_pre_and_included():
    text = render()
    assert "%include /tmp/octoprov-disk.ks" in text
    assert text.index("\n%pre ") > text.index("\n%include ") and "ignoredisk --only-use=%s" in text


def test_shell_quoting_of_hostile_text():
    for value in ["'; rm -rf / #", "$(reboot)", "a b\"c", "`id`"]:
        assert shlex.split(ks_quote(value)) == [value]


def test_domain_join_is_refused_rather_than_silently_skipped():
    body = {**BODY, "domain": {"join": True, "name": "yourdom.local", "method": "offline"}}
    with pytest.raises(InvalidRequest) as error:
        render(body)
    assert "domain.join" in error.value.errors


def test_which_images_use_kickstart():
    assert uses_kickstart(ROCKY)
    assert not uses_kickstart(ImageInfo(1, "tiny", "linux", "x64", "t/root.img", 1, kernel_args="console=ttyS0"))
    assert not uses_kickstart(ImageInfo(1, "ws", "windows", "x64", "w.wim", 1, kernel_args="inst.repo=x"))


def test_anaconda_boot_script_points_at_the_tasks_kickstart(anonymous, client, database, runtime, settings):
    from sqlalchemy import update

    from octoprov.models import Task, TaskStep

    folder = settings.effective_images_dir / "rocky9"
    folder.mkdir()
    for name in ("vmlinuz", "initrd.img", "root.img"):
        (folder / name).write_bytes(b"x")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Rocky 9", "osType": "linux", "imagePath": "rocky9/root.img", "kernelPath": "rocky9/vmlinuz",
        "initrdPath": "rocky9/initrd.img", "kernelArgs": "inst.repo=http://192.0.2.10/rocky9/ inst.text"}).json["id"]
    task = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "web-01", "targetType": "baremetal", "macAddress": "52:54:00:ab:cd:ef",
        "os": {"imageId": image, "adminPassword": "R00t-pw!"}}).json
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name.in_(
            ["register_machine", "render_answers", "register_mac", "power_on"])).values(status="done"))
        files_token = runtime.vault.decrypt(session.get(Task, task["id"]).files_token_encrypted)
    script = anonymous.get("/api/v1/provisioning/pxe/boot", query_string={"mac": "52-54-00-ab-cd-ef"}).get_data(
        as_text=True)
    url = f"{runtime.settings.effective_public_url}/api/v1/provisioning/pxe/files/{files_token}/kickstart.cfg"
    assert f"inst.text inst.ks={url} octoprov.task=" in script
    served = anonymous.get(url.split(runtime.settings.effective_public_url, 1)[1])
    assert served.status_code == 200 and "rootpw --iscrypted" in served.get_data(as_text=True)
    assert "R00t-pw!" not in served.get_data(as_text=True)
    plan = client.post("/api/v1/provisioning/tasks", query_string={"dryRun": "true"}, json={
        "hostname": "web-02", "targetType": "baremetal", "macAddress": "52:54:00:ab:cd:00",
        "os": {"imageId": image}}).json
    assert "kickstart.cfg" in plan["artifacts"] and "autounattend.xml" not in plan["artifacts"]
