"""NoCloud ``meta-data``: who the machine is to cloud-init.

cloud-init runs its once-per-instance modules (users, SSH host keys, ``runcmd``) when it sees an
instance id it has not seen on this disk before. The id names the task, so each task's machine
is configured exactly once, and a machine that reboots keeps its configuration.
"""

from __future__ import annotations

from octoprov.cloudinit.yamldoc import dump


def instance_id(task_id: int) -> str:
    return f"octoprov-task-{task_id}"


def meta_data(task_id: int, hostname: str) -> str:
    return dump({"instance-id": instance_id(task_id), "local-hostname": hostname})
