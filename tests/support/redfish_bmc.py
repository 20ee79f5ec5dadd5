"""A Redfish BMC for the tests: sushy-tools' emulator (a real Redfish HTTP service) on loopback,
in front of either its in-memory fake systems or the libvirt lab's domains, with HTTP basic
authentication from an htpasswd file (bcrypt, the only hash it accepts). Stopped by PID."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import requests

from tests.support.live import free_port
from tests.support.processes import stop_group

USER, PASSWORD = "admin", "bmc-Secret-7"


@dataclass(frozen=True)
class Bmc:
    url: str
    username: str
    password: str


@contextlib.contextmanager
def emulator(workdir: Path, *, libvirt_uri: str | None = None, fake_systems: list[dict] | None = None,
             extra_settings: dict[str, Any] | None = None) -> Iterator[Bmc]:
    """``libvirt_uri``: the domains of that libvirt are the systems; else ``fake_systems`` (in memory).
    ``extra_settings``: more of the emulator's settings (its firmware files for Secure Boot, say)."""
    workdir.mkdir(parents=True, exist_ok=True)
    auth = workdir / "htpasswd"
    auth.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    settings = {"SUSHY_EMULATOR_AUTH_FILE": str(auth), "SUSHY_EMULATOR_STATE_DIR": str(workdir / "state"),
                **(extra_settings or {})}
    if libvirt_uri:
        settings["SUSHY_EMULATOR_LIBVIRT_URI"] = libvirt_uri
    else:
        settings["SUSHY_EMULATOR_FAKE_DRIVER"] = True
        settings["SUSHY_EMULATOR_FAKE_SYSTEMS"] = fake_systems or []
    config = workdir / "emulator.conf"
    config.write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))  # Python syntax
    port = free_port()
    log = open(workdir / "emulator.log", "ab")  # noqa: SIM115 - the child keeps it; closed below
    try:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "sushy-emulator"), "--config", str(config), "-i", "127.0.0.1",
             "-p", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/redfish/v1", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sushy-emulator did not start: {(workdir / 'emulator.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Bmc(url, USER, PASSWORD)
    finally:
        stop_group(process, grace=10)
