#!/usr/bin/env python3
"""Runs on the provisioned machine, not in Octoprov: cloud-init's ``runcmd`` starts it once, at
the end of the instance's first boot.

It reports ``first_boot`` to Octoprov's status callback, runs the task's post-install commands
in order with ``sh -c`` (stopping at the first that fails), then reports ``os_installed`` as ok,
or as failed naming the command, so a failed hook fails the task instead of passing unnoticed.
Its settings (callback URL, task id, token, commands) come from a root-only JSON file the
user-data writes; the file is removed at the end, since the token is of no use afterwards.

Only the standard library, and nothing newer than Python 3.6 (annotations it cannot evaluate are
written as strings): this is whatever Python the image's cloud-init runs on.
"""

import glob
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

CONFIG = "/etc/octoprov/firstboot.json"
ATTEMPTS = 30  # about 7 minutes of retries: the API may be restarting, the network still coming up
TIMEOUT_S = 15


def log(text: str) -> None:
    sys.stderr.write(f"octoprov-firstboot: {text}\n")
    sys.stderr.flush()


def facts() -> "dict[str, Any]":
    """What Octoprov needs to log on for post-install: this machine's addresses and its SSH server's
    host keys (which Octoprov then pins)."""
    try:
        addresses = subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE, timeout=10,
                                   check=False).stdout.decode().split()
    except (OSError, subprocess.SubprocessError):
        addresses = []
    keys = []
    for name in sorted(glob.glob("/etc/ssh/ssh_host_*_key.pub")):
        with open(name, encoding="utf-8") as handle:
            keys.append(" ".join(handle.read().split()[:2]))
    return {"addresses": addresses[:16], "ssh": {"port": 22, "hostKeys": keys[:8]}}


def post(config: "dict[str, Any]", event: str, status: str, message: str,
         extra: "dict[str, Any] | None" = None) -> bool:
    """POST one status report; True when the API answered. Client errors (bad token, unknown
    task) are final: repeating the same report cannot change the answer."""
    report = {"taskId": config["taskId"], "token": config["token"], "event": event, "status": status,
              "message": message[:2000]}
    report.update(extra or {})
    body = json.dumps(report).encode("utf-8")
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(  # noqa: S310 - the callback URL Octoprov wrote into the seed
            config["url"], data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - as above
                log(f"{event} ({status}): {response.read(500).decode('utf-8', 'replace')}")
                return True
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                log(f"{event} refused: HTTP {exc.code}")
                return False
            reason = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            reason = str(exc)
        log(f"{event}: attempt {attempt} failed: {reason}")
        time.sleep(min(2 ** attempt, 15))
    return False


def run_commands(commands: "list[str]") -> "str | None":
    """Run each command with ``sh -c``; None when all succeeded, else what failed."""
    for number, command in enumerate(commands, 1):
        log(f"command {number} of {len(commands)}")
        code = subprocess.call(["/bin/sh", "-c", command])
        if code != 0:
            return f"post-install command {number} of {len(commands)} exited with status {code}"
    return None


def main(config_path: str = CONFIG) -> int:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    commands = config.get("commands") or []
    post(config, "first_boot", "ok", "cloud-init started the first boot's commands", facts())
    failure = run_commands(commands)
    if failure:
        post(config, "os_installed", "failed", failure)
    else:
        post(config, "os_installed", "ok", f"configured by cloud-init; {len(commands)} post-install commands run")
    os.remove(config_path)
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
