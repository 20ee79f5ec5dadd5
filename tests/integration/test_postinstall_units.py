"""The pieces of post-install that need no machine: the shell scripts items become, the deploy key,
what a callback may report about the machine, and the result node it fills."""

from __future__ import annotations

import stat
import subprocess

import pytest

from octoprov import deploykey
from octoprov.postinstall import shell
from octoprov.settings import Settings
from octoprov.steps import is_post_install
from tests.support.live import octoprov

TRICKY = ["plain", "it's", '"double"', "$(touch pwned)", "`id`", "a\nb", "tab\there", "ünïcødé", "back\\slash", ""]


@pytest.mark.parametrize("value", TRICKY)
def test_parameters_reach_the_script_as_data(tmp_path, value):
    script = shell.item_script('printf %s "$VALUE" > out', {"VALUE": value, "FLAG": True, "COUNT": 3})
    subprocess.run(["sh", "-s"], input=script, text=True, cwd=tmp_path, check=True)
    assert (tmp_path / "out").read_text() == value
    assert not (tmp_path / "pwned").exists()


def test_booleans_and_numbers_as_the_shell_sees_them(tmp_path):
    script = shell.item_script('printf "%s %s" "$FLAG" "$COUNT"', {"FLAG": False, "COUNT": 3})
    assert subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True).stdout == "false 3"


def test_a_name_that_is_not_an_identifier_is_refused():
    with pytest.raises(ValueError):
        shell.exports({"X; rm -rf /": "1"})


def test_a_failing_line_stops_the_script(tmp_path):
    result = subprocess.run(["sh", "-s"], input=shell.item_script("false\necho after", {}), text=True,
                            capture_output=True)
    assert result.returncode != 0 and "after" not in result.stdout


def test_installer_gets_its_arguments_split_as_a_shell_would(tmp_path):
    installer = tmp_path / "setup.sh"
    installer.write_text('printf "%s|" "$@" > "$(dirname "$0")/args"\nexit 4\n')
    result = subprocess.run(["sh", "-s"], input=shell.installer_script(str(installer), "--site 'lab one' -v"),
                            text=True)
    assert result.returncode == 4  # the installer's own status
    assert (tmp_path / "args").read_text() == "--site|lab one|-v|"
    assert not installer.exists()  # removed after it ran


def test_deploy_key_is_made_once_and_private(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = deploykey.public_key(settings)
    assert first.startswith("ssh-ed25519 ") and first.endswith(" octoprov-deploy")
    assert deploykey.public_key(settings) == first
    assert stat.S_IMODE(deploykey.key_file(settings).stat().st_mode) == 0o600
    printed = octoprov("deploy-key", env={"PATH": "/usr/bin:/bin", "OCTOPROV_DATA_DIR": str(tmp_path)}).stdout
    assert printed.strip() == first


def test_post_install_steps():
    assert all(map(is_post_install, ["install_agent", "add_to_groups", "package_0", "script_12"]))
    assert not any(map(is_post_install, ["finish", "power_on", "package_x", "first_boot"]))


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbu2K2Hv0dUl/0aHaiUIoPPu6vZG8Gz8uhwm1tXzTz2"


@pytest.mark.parametrize(("extra", "field"), [
    ({"addresses": ["not-an-ip"]}, "addresses[0]"),
    ({"ssh": {"port": 0}}, "ssh.port"),
    ({"ssh": {"hostKeys": ["ssh-ed25519 !!!"]}}, "ssh.hostKeys[0]"),
    ({"ssh": {"hostKeys": [HOST_KEY] * 9}}, "ssh.hostKeys"),
], ids=["address", "port", "key", "too-many-keys"])
def test_callback_facts_are_checked(client, extra, field):
    response = client.post("/api/v1/provisioning/pxe/status", json={
        "taskId": 1, "token": "x", "event": "first_boot", **extra})
    assert response.status_code == 400 and field in response.json["errors"], response.json
