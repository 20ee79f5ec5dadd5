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


def test_settings_from_env_with_defaults(tmp_path):
    s = Settings.from_env({"OCTOPROV_DATA_DIR": str(tmp_path), "OCTOPROV_API_PORT": "9090"})
    assert s.api_port == 9090
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'octoprov.sqlite'}"
    assert s.effective_broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert s.effective_images_dir == tmp_path / "images"
    with pytest.raises(SettingsError, match="OCTOPROV_API_PORT"):
        Settings.from_env({"OCTOPROV_API_PORT": "eighty"})


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
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
    time.sleep(2)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1
    process.terminate()
    assert process.wait(timeout=20) == 0
    assert not Path(f"/proc/{children[0]}").exists()
