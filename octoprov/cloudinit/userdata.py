"""NoCloud ``user-data``: the ``#cloud-config`` that turns a generic cloud image into the task's machine.

Built as a dict and dumped by the YAML library, so no value can change the document's shape.
It sets the host name, creates the admin account (SSH keys, and the password only as a
SHA-512 crypt hash), and has ``runcmd`` start the first-boot runner (``firstboot.py``), which
posts the task's callbacks around the post-install commands. The runner and its settings are
written with ``write_files``: the settings file, which holds the callback token, is root-only.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from octoprov.cloudinit.yamldoc import dump

HEADER = "#cloud-config"
DEFAULT_ADMIN = "admin"
RUNNER = "/usr/local/sbin/octoprov-firstboot"
RUNNER_CONFIG = "/etc/octoprov/firstboot.json"


@dataclass(frozen=True)
class Admin:
    name: str = DEFAULT_ADMIN
    password_hash: str | None = field(default=None, repr=False)  # "$6$...": never the password itself
    ssh_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Callback:
    url: str
    task_id: int
    token: str = field(repr=False)


def runner_source() -> str:
    return importlib.resources.files("octoprov.cloudinit").joinpath("firstboot.py").read_text(encoding="utf-8")


def user_data(*, hostname: str, admin: Admin, callback: Callback, commands: Sequence[str] = (),
              fqdn: str | None = None, timezone: str | None = None) -> str:
    document: dict[str, Any] = {"hostname": hostname}
    if fqdn:
        document["fqdn"] = fqdn
    document["manage_etc_hosts"] = True
    if timezone:
        document["timezone"] = timezone
    user: dict[str, Any] = {
        "name": admin.name,
        "gecos": "Octoprov administrator",
        "shell": "/bin/bash",
        # like a cloud image's default user: an account that may have no password needs sudo without one
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "lock_passwd": admin.password_hash is None,
    }
    if admin.password_hash:
        user["hashed_passwd"] = admin.password_hash
    if admin.ssh_keys:
        user["ssh_authorized_keys"] = list(admin.ssh_keys)
    document["users"] = [user]  # only this account: no distribution default user (debian, ubuntu) beside it
    settings = {"url": callback.url, "taskId": callback.task_id, "token": callback.token, "commands": list(commands)}
    document["write_files"] = [
        {"path": RUNNER_CONFIG, "owner": "root:root", "permissions": "0600",
         "content": json.dumps(settings, indent=2, ensure_ascii=False) + "\n"},
        {"path": RUNNER, "owner": "root:root", "permissions": "0755", "content": runner_source()},
    ]
    document["runcmd"] = [["python3", RUNNER]]
    return dump(document, header=HEADER)
