"""Settings, encryption at rest, log redaction, path confinement and the supervisor."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from octoprov.crypto import SecretUnreadable, Vault, load_or_create_key_file
from octoprov.logs import SecretRedactor, configure, redactor
from octoprov.paths import confined
from octoprov.settings import Settings, SettingsError
from octoprov.supervisor import ProcessGroup
from tests.support import ROOT


def test_settings_from_env_with_defaults(tmp_path):
    s = Settings.from_env({"OCTOPROV_DATA_DIR": str(tmp_path), "OCTOPROV_API_PORT": "9090"})
    assert s.api_port == 9090
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'octoprov.sqlite'}"
    assert s.effective_broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert s.effective_images_dir == tmp_path / "images"
    with pytest.raises(SettingsError, match="OCTOPROV_API_PORT"):
        Settings.from_env({"OCTOPROV_API_PORT": "eighty"})


@pytest.mark.parametrize(("name", "value"), [
    ("OCTOPROV_API_PORT", "0"), ("OCTOPROV_TFTP_PORT", "65536"), ("OCTOPROV_PROXYDHCP_PXE_PORT", "-1"),
    ("OCTOPROV_API_WORKERS", "0"), ("OCTOPROV_STEP_RETRIES", "-1"), ("OCTOPROV_STEP_LEASE_S", "0"),
    ("OCTOPROV_DEADLINE_OS_INSTALL_S", "0"), ("OCTOPROV_WEBHOOK_TIMEOUT_S", ""),
    ("OCTOPROV_LOG_LEVEL", "VERBOSE"), ("OCTOPROV_DJOIN_TRANSPORT", "basic"),
    ("OCTOPROV_UEFI_BOOT_FILE", "undionly.kpxe"), ("OCTOPROV_HYPERV_SECURE_BOOT_TEMPLATE", "Off"),
    ("OCTOPROV_PXE_ENABLED", "maybe"),
])
def test_settings_refuse_values_out_of_range_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_settings_accept_the_documented_words():
    s = Settings.from_env({"OCTOPROV_PXE_ENABLED": " Yes ", "OCTOPROV_CHECK_ON_HOST": "", "OCTOPROV_SAMBA_SMB1": "on",
                           "OCTOPROV_IMAGES_DIR": "", "OCTOPROV_LOG_LEVEL": "debug", "OCTOPROV_TFTP_PORT": "65535",
                           "OCTOPROV_UEFI_BOOT_FILE": "snponly.efi", "OCTOPROV_DJOIN_TRANSPORT": "kerberos",
                           "OCTOPROV_HYPERV_SECURE_BOOT_TEMPLATE": "MicrosoftWindows", "OCTOPROV_STEP_RETRIES": "0"})
    assert (s.pxe_enabled, s.check_on_host, s.samba_smb1, s.images_dir) == (True, False, True, None)
    assert (s.log_level, s.tftp_port, s.uefi_boot_file, s.step_retries) == ("DEBUG", 65535, "snponly.efi", 0)
    assert (s.djoin_transport, s.hyperv_secure_boot_template) == ("kerberos", "MicrosoftWindows")


def test_settings_built_with_keywords_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("OCTOPROV_API_PORT", "9191")
    assert Settings().api_port == 8080
    assert Settings.from_env().api_port == 9191
    assert Settings.from_env(api_port=9292).api_port == 9292  # overrides win over the environment
    with pytest.raises(SettingsError, match="OCTOPROV_API_PORT"):
        Settings(api_port=0)


def test_settings_are_frozen_and_keep_secrets_out_of_repr():
    s = Settings(secret_key="not-for-logs", djoin_password="hunter2-secret")
    with pytest.raises(ValueError):
        s.api_port = 1  # type: ignore[misc]
    assert "not-for-logs" not in repr(s) and "hunter2-secret" not in repr(s)
    assert s.model_copy(update={"api_port": 9000}).api_port == 9000 and s.api_port == 8080


def test_each_wait_step_has_its_deadline():
    s = Settings(deadline_installer_started_s=1, deadline_os_install_s=2, deadline_first_boot_s=3,
                 deadline_domain_join_s=4)
    assert [s.deadline_s(name) for name in ("installer_started", "os_install", "first_boot", "domain_join")] == [
        1, 2, 3, 4]
    assert s.deadline_s("some_future_wait") == 2


def test_vault_round_trip_rotation_and_wrong_key():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Vault([old]).encrypt("P@ssw0rd")
    assert "P@ssw0rd" not in token
    assert Vault([new, old]).decrypt(token) == "P@ssw0rd"  # rotated: old secrets still readable
    with pytest.raises(SecretUnreadable):
        Vault([new]).decrypt(token)


def test_key_file_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "var" / "secret.key"
    key = load_or_create_key_file(path)
    assert load_or_create_key_file(path) == key
    assert path.stat().st_mode & 0o777 == 0o600


def test_redactor_masks_registered_values_and_pairs():
    r = SecretRedactor()
    r.register("hunter2-secret")
    assert r.redact("login with hunter2-secret failed") == "login with ******** failed"
    assert "xyz123" not in r.redact("connect password=xyz123 to host")
    assert "abc" not in r.redact('{"adminPassword": "abc"}')


def test_redactor_keeps_only_the_newest_values():
    r = SecretRedactor(capacity=2)
    r.register("first-secret", "second-secret", "third-secret")
    assert r.redact("first-secret third-secret") == "first-secret ********"


def test_log_files_go_through_the_redactor(tmp_path):
    path = configure(tmp_path, "unit")
    redactor.register("very-secret-value")
    logging.getLogger("unit").warning("value is very-secret-value")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "very-secret-value" not in path.read_text()
    assert "********" in path.read_text()


@pytest.mark.parametrize("value", ["../x", "/etc", "a/../../x", "a\x00b", ""])
def test_confined_refuses_escapes(tmp_path, value):
    with pytest.raises(ValueError):
        confined(tmp_path, value)


def test_confined_accepts_inside_paths(tmp_path):
    assert confined(tmp_path, "a/b.wim") == tmp_path.resolve() / "a/b.wim"
    assert confined(tmp_path, str(tmp_path / "c")) == tmp_path.resolve() / "c"


def test_supervisor_restarts_a_crashed_child_and_gives_up_on_a_flapping_one(tmp_path):
    marker = tmp_path / "runs"
    script = f"import pathlib; p = pathlib.Path({str(marker)!r}); p.write_text(p.read_text() + 'x' " \
             f"if p.exists() else 'x'); raise SystemExit(3)"
    group = ProcessGroup({"flappy": [sys.executable, "-c", script]}, max_deaths=3, window=60)
    group.children[0].restart_at = 0
    started = time.monotonic()
    assert group.run() == 1
    assert marker.read_text() == "xxx"
    assert time.monotonic() - started < 30


def test_supervisor_stops_children_on_terminate(tmp_path):
    code = ("import signal, subprocess, sys, time\n"
            "from octoprov.supervisor import ProcessGroup\n"
            "g = ProcessGroup({'sleeper': [sys.executable, '-c', 'import time; time.sleep(600)']})\n"
            "sys.exit(g.run())\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    time.sleep(2)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1
    process.terminate()
    assert process.wait(timeout=20) == 0
    assert not Path(f"/proc/{children[0]}").exists()
