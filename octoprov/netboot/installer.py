"""The installer's kernel command line, the same however the machine boots it (iPXE, GRUB, a boot ISO)."""

from __future__ import annotations


def installer_arguments(task_id: int, kernel_args: str, callback_url: str, token: str) -> list[str]:
    """Word by word: the image's arguments, then where and how the installer reports."""
    return [*kernel_args.split(), f"octoprov.task={task_id}", f"octoprov.callback={callback_url}",
            f"octoprov.token={token}"]
