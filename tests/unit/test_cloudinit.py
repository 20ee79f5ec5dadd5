"""cloud-init seeds: user-data checked by cloud-init's own schema, network-config rendered by
cloud-init's own converter, values that YAML treats specially coming back exactly, the seed ISO
read back, and the first-boot runner posting its callbacks to a server on 127.0.0.1."""

from __future__ import annotations

import base64
import http.server
import io
import json
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pycdlib
import pytest
import yaml

from octoprov.answerfiles.passwords import sha512_crypt
from octoprov.cloudinit import seed_files
from octoprov.cloudinit.metadata import instance_id
from octoprov.cloudinit.network import network_config
from octoprov.cloudinit.seed import LABEL, seed_iso
from octoprov.cloudinit.userdata import RUNNER, RUNNER_CONFIG, runner_source
from octoprov.taskspec import NetworkSpec
from octoprov.validation import check_linux_user_name, check_ssh_public_key
from tests.support.examples import task_spec

CLOUD_INIT = shutil.which("cloud-init")
PASSWORD = "pä$$ 'w\"ord: #1\\"
TOKEN = "tok-_en123"
URL = "http://127.0.0.1:8080/api/v1/provisioning/pxe/status"
MAC = "52:54:00:12:34:56"  # all digits: a YAML 1.1 reader would take 52:54:00:12:34:56 for a number


def ssh_key(kind: str = "ssh-ed25519", comment: str = "ops@example") -> str:
    blob = struct.pack(">I", len(kind)) + kind.encode() + struct.pack(">I", 32) + bytes(range(32))
    return f"{kind} {base64.b64encode(blob).decode()} {comment}".strip()


TRICKY = [
    "echo 'single' \"double\" `date` $HOME",
    "key: value # not a comment",
    "line one\nline two\n  indented: yes\n",
    "yes", "no", "~", "null", "0x1F", "1:20:30", "- item", "{a: 1}", "[1, 2]", "&anchor", "*alias", "!tag",
    "grüße, 日本語, emoji 🚀",
    "trailing spaces   ",
    "  leading spaces",
    "tab\there",
    "%percent @at",
]


def config(**changes) -> dict:
    base = {
        "os": {"imageId": 1, "timezone": "W. Europe Standard Time", "adminUsername": "ops",
               "sshAuthorizedKeys": [ssh_key(), ssh_key("ssh-rsa", "zoë: \"laptop\" #2")]},
        "network": {"mode": "dhcp", "dns": []},
        "domain": {"join": False, "name": "corp.example"},
        "postInstall": {"runCommands": TRICKY},
    }
    base.update(changes)
    return base


def files_for(cfg: dict, password: str | None = PASSWORD, mac: str = MAC, task_id: int = 7) -> dict[str, str]:
    """The seed of a KVM request for web01 made of ``cfg``'s sections, with this admin password."""
    os_section = {**cfg["os"], **({"adminPassword": password} if password else {})}
    spec = task_spec("kvm", "web01", os_type="linux", **{**cfg, "os": os_section})
    return seed_files(spec, task_id=task_id, mac_address=mac, callback_url=URL, callback_token=TOKEN)


def network(**section) -> NetworkSpec:
    return NetworkSpec.model_validate(section)


def cloud_config(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


# --- user-data -------------------------------------------------------------------------------------

@pytest.mark.skipif(CLOUD_INIT is None, reason="cloud-init is not installed")
@pytest.mark.parametrize("cfg", [
    pytest.param(config(), id="everything"),
    pytest.param(config(os={"imageId": 1}, postInstall={}, domain={}), id="minimal"),
], )
@pytest.mark.parametrize("password", [PASSWORD, None], ids=["password", "no-password"])
def test_user_data_passes_cloud_init_schema(tmp_path, cfg, password):
    path = tmp_path / "user-data"
    path.write_text(files_for(cfg, password)["user-data"], encoding="utf-8")
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


@pytest.mark.skipif(CLOUD_INIT is None, reason="cloud-init is not installed")
def test_schema_check_can_fail(tmp_path):
    """The schema check is not a formality: a wrong type is reported."""
    data = cloud_config(files_for(config())["user-data"])
    data["users"][0]["lock_passwd"] = "sometimes"
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\n" + yaml.safe_dump(data))
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "lock_passwd" in result.stdout + result.stderr


def test_user_data_content():
    data = cloud_config(files_for(config())["user-data"])
    assert data["hostname"] == "web01" and data["fqdn"] == "web01.corp.example"
    assert data["timezone"] == "Europe/Berlin"
    [user] = data["users"]
    assert user["name"] == "ops" and user["lock_passwd"] is False
    assert user["ssh_authorized_keys"] == [ssh_key(), ssh_key("ssh-rsa", "zoë: \"laptop\" #2")]
    assert data["runcmd"] == [["python3", RUNNER]]
    written = {entry["path"]: entry for entry in data["write_files"]}
    assert written[RUNNER]["content"] == runner_source() and written[RUNNER]["permissions"] == "0755"
    assert written[RUNNER_CONFIG]["permissions"] == "0600"
    settings = json.loads(written[RUNNER_CONFIG]["content"])
    assert settings == {"url": URL, "taskId": 7, "token": TOKEN, "commands": TRICKY}


def test_password_only_as_sha512_crypt_hash():
    text = files_for(config())["user-data"]
    assert PASSWORD not in text and "pä$$" not in text
    hashed = cloud_config(text)["users"][0]["hashed_passwd"]
    assert hashed.startswith("$6$")
    salt = hashed.split("$")[2]
    assert sha512_crypt(PASSWORD, salt) == hashed
    assert cloud_config(files_for(config())["user-data"])["users"][0]["hashed_passwd"] != hashed  # fresh salt


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_password_hash_matches_openssl():
    hashed = cloud_config(files_for(config())["user-data"])["users"][0]["hashed_passwd"]
    salt = hashed.split("$")[2]
    result = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=PASSWORD.encode(),
                            capture_output=True, check=True, timeout=30)
    assert result.stdout.decode().strip() == hashed


def test_without_password_or_domain():
    data = cloud_config(files_for(config(domain={}, os={"imageId": 1}), password=None)["user-data"])
    assert "fqdn" not in data and "timezone" not in data
    [user] = data["users"]
    assert user["name"] == "admin" and user["lock_passwd"] is True
    assert "hashed_passwd" not in user and "ssh_authorized_keys" not in user


@pytest.mark.parametrize("value", TRICKY)
def test_values_round_trip_through_yaml(value):
    """Every free-form value comes back exactly: commands, and an SSH key comment."""
    key = ssh_key(comment=value.replace("\n", " ").replace("\t", " ").strip() or "x")
    cfg = config(postInstall={"runCommands": [value]})
    cfg["os"]["sshAuthorizedKeys"] = [check_ssh_public_key(key)]
    data = cloud_config(files_for(cfg)["user-data"])
    settings = json.loads(next(e["content"] for e in data["write_files"] if e["path"] == RUNNER_CONFIG))
    assert settings["commands"] == [value]
    assert data["users"][0]["ssh_authorized_keys"] == [check_ssh_public_key(key)]


@pytest.mark.parametrize(("key", "problem"), [
    ("ssh-ed25519", "followed by the key"),
    ("ssh-dss AAAAB3NzaC1kc3M= old", "key type"),
    ('from="10.0.0.1" ' + ssh_key(), "key type"),
    ("ssh-ed25519 not!base64", "not valid base64"),
    (ssh_key().replace("ssh-ed25519 ", "ssh-rsa ", 1), "does not hold a ssh-rsa key"),
    (ssh_key() + "\nssh-ed25519 AAAA second", "single line"),
    (ssh_key(comment="bad \ud800"), "surrogate"),
])
def test_ssh_keys_that_sshd_could_not_read_are_refused(key, problem):
    with pytest.raises(ValueError, match=problem):
        check_ssh_public_key(key)


@pytest.mark.parametrize(("name", "ok"), [("admin", True), ("ops_team-1", True), ("_svc", True), ("Admin", False),
                                          ("1st", False), ("root", False), ("a" * 33, False), ("ö", False)])
def test_admin_user_names(name, ok):
    if ok:
        assert check_linux_user_name(name) == name
    else:
        with pytest.raises(ValueError):
            check_linux_user_name(name)


# --- meta-data and network-config ---------------------------------------------------------------------

def test_meta_data():
    first, second = yaml.safe_load(files_for(config())["meta-data"]), yaml.safe_load(
        files_for(config(), task_id=8)["meta-data"])
    assert first == {"instance-id": instance_id(7), "local-hostname": "web01"}
    assert first["instance-id"] != second["instance-id"]


def test_network_config_dhcp():
    data = yaml.safe_load(network_config(MAC, network(mode="dhcp", dns=[])))
    assert data == {"version": 2, "ethernets": {"eth0": {"match": {"macaddress": MAC}, "set-name": "eth0",
                                                          "dhcp4": True}}}


def test_network_config_static():
    static = {"mode": "static", "ip": "198.51.100.50", "subnet": "255.255.255.0", "gateway": "198.51.100.1",
              "dns": ["198.51.100.10", "198.51.100.11"]}
    data = yaml.safe_load(network_config("52:54:00:AB:CD:EF", network(**static), "corp.example"))
    eth0 = data["ethernets"]["eth0"]
    assert data["version"] == 2
    assert eth0["match"] == {"macaddress": "52:54:00:ab:cd:ef"} and eth0["dhcp4"] is False
    assert eth0["addresses"] == ["198.51.100.50/24"]
    assert eth0["routes"] == [{"to": "0.0.0.0/0", "via": "198.51.100.1"}]
    assert eth0["nameservers"] == {"addresses": ["198.51.100.10", "198.51.100.11"], "search": ["corp.example"]}
    prefix = yaml.safe_load(network_config(MAC, network(**{**static, "subnet": "/26", "gateway": None, "dns": []})))
    assert prefix["ethernets"]["eth0"]["addresses"] == ["198.51.100.50/26"]
    assert "routes" not in prefix["ethernets"]["eth0"] and "nameservers" not in prefix["ethernets"]["eth0"]


def _net_convert(tmp_path: Path, text: str, output: str) -> dict[str, str]:
    """Render network-config with cloud-init's own converter, as it does at boot; the files it wrote."""
    tmp_path.mkdir()
    (tmp_path / "network-config").write_text(text)
    out = tmp_path / output
    result = subprocess.run([CLOUD_INIT, "devel", "net-convert", "-p", str(tmp_path / "network-config"), "-k", "yaml",
                             "-d", str(out), "-D", "debian", "-O", output, "-m", f"ens3,{MAC}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return {str(path.relative_to(out)): path.read_text() for path in out.rglob("*") if path.is_file()}


@pytest.mark.skipif(CLOUD_INIT is None, reason="cloud-init is not installed")
def test_network_config_as_cloud_init_renders_it(tmp_path):
    """cloud-init 22.4 has no schema for network-config; its converter is the check: what it writes
    for systemd-networkd and netplan from the static and the DHCP variant."""
    static = {"mode": "static", "ip": "198.51.100.50", "subnet": "24", "gateway": "198.51.100.1",
              "dns": ["198.51.100.10"]}
    written = _net_convert(tmp_path / "static", network_config(MAC, network(**static), "corp.example"), "networkd")
    [unit] = [text for name, text in written.items() if name.endswith(".network")]
    assert f"MACAddress={MAC}" in unit and "Name=eth0" in unit
    assert "Address=198.51.100.50/24" in unit and "Gateway=198.51.100.1" in unit
    assert "DNS=198.51.100.10" in unit and "Domains=corp.example" in unit and "DHCP=no" in unit
    netplan = _net_convert(tmp_path / "dhcp", network_config(MAC, network(mode="dhcp")), "netplan")
    [plan] = [yaml.safe_load(text) for name, text in netplan.items() if name.endswith(".yaml")]
    assert plan["network"]["ethernets"]["eth0"]["dhcp4"] is True
    assert plan["network"]["ethernets"]["eth0"]["match"] == {"macaddress": MAC}


# --- the seed ISO ----------------------------------------------------------------------------------------

def read_iso(data: bytes) -> tuple[dict[str, str], dict[str, str], str, str]:
    """Rock Ridge files, Joliet files, and the primary and Joliet volume labels."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        def read(**path) -> str:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **path)
            return out.getvalue().decode("utf-8")

        names = [entry.rock_ridge.name().decode() for entry in iso.list_children(rr_path="/")
                 if entry.rock_ridge is not None and not entry.is_dot() and not entry.is_dotdot()]
        rock_ridge = {name: read(rr_path=f"/{name}") for name in names}
        joliet_names = [entry.file_identifier().decode("utf-16-be") for entry in iso.list_children(joliet_path="/")
                        if not entry.is_dot() and not entry.is_dotdot()]
        joliet = {name: read(joliet_path=f"/{name}") for name in joliet_names}
        primary = iso.pvd.volume_identifier.decode().strip()
        joliet_label = iso.joliet_vd.volume_identifier.decode("utf-16-be").strip()
        return rock_ridge, joliet, primary, joliet_label
    finally:
        iso.close()


def test_seed_iso_reads_back():
    files = files_for(config(network={"mode": "static", "ip": "198.51.100.50", "subnet": "24"}))
    rock_ridge, joliet, primary, joliet_label = read_iso(seed_iso(files))
    assert rock_ridge == files and joliet == files
    assert primary == joliet_label == LABEL
    assert cloud_config(rock_ridge["user-data"])["hostname"] == "web01"
    assert yaml.safe_load(rock_ridge["meta-data"])["instance-id"] == instance_id(7)
    assert yaml.safe_load(rock_ridge["network-config"])["ethernets"]["eth0"]["addresses"] == ["198.51.100.50/24"]


def test_seed_iso_refuses_other_files():
    with pytest.raises(ValueError, match="vendor-data"):
        seed_iso({"vendor-data": ""})


# --- the first-boot runner, run here against a local callback server ------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    reports: list
    answer: int = 200

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reports.append(body)
        self.send_response(self.answer)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"accepted": true, "reason": "step completed"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def callback_server():
    handler = type("Handler", (_Recorder,), {"reports": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def run_runner(tmp_path: Path, url: str, commands: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the runner with the settings the user-data writes (its own path instead of /etc)."""
    data = cloud_config(files_for(config(postInstall={"runCommands": commands}))["user-data"])
    written = {entry["path"]: entry["content"] for entry in data["write_files"]}
    settings = json.loads(written[RUNNER_CONFIG])
    settings["url"] = url
    path = tmp_path / "firstboot.json"
    path.write_text(json.dumps(settings))
    runner = tmp_path / "octoprov-firstboot"
    runner.write_text(written[RUNNER])
    result = subprocess.run([sys.executable, str(runner), str(path)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    return result, path


def test_runner_reports_first_boot_runs_commands_then_os_installed(tmp_path, callback_server):
    server, handler = callback_server
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/provisioning/pxe/status"
    commands = ["echo one > out.txt", "printf '%s\\n' \"two: 'quoted'\" >> out.txt"]
    result, settings = run_runner(tmp_path, url, commands)
    assert result.returncode == 0, result.stderr
    assert [(r["event"], r["status"]) for r in handler.reports] == [("first_boot", "ok"), ("os_installed", "ok")]
    assert all(r["taskId"] == 7 and r["token"] == TOKEN for r in handler.reports)
    assert "2 post-install commands" in handler.reports[1]["message"]
    assert (tmp_path / "out.txt").read_text() == "one\ntwo: 'quoted'\n"
    assert not settings.exists()  # the token does not stay on the machine


def test_runner_stops_at_a_failing_command_and_reports_it(tmp_path, callback_server):
    server, handler = callback_server
    url = f"http://127.0.0.1:{server.server_address[1]}/status"
    result, _ = run_runner(tmp_path, url, ["true", "exit 3", "touch never.txt"])
    assert result.returncode == 1
    assert [(r["event"], r["status"]) for r in handler.reports] == [("first_boot", "ok"), ("os_installed", "failed")]
    assert handler.reports[1]["message"] == "post-install command 2 of 3 exited with status 3"
    assert not (tmp_path / "never.txt").exists()


def test_runner_does_not_repeat_a_refused_report(tmp_path, callback_server):
    server, handler = callback_server
    handler.answer = 403
    url = f"http://127.0.0.1:{server.server_address[1]}/status"
    result, _ = run_runner(tmp_path, url, [])
    assert result.returncode == 0
    assert [r["event"] for r in handler.reports] == ["first_boot", "os_installed"]  # one try each, no retries
    assert "refused: HTTP 403" in result.stderr
