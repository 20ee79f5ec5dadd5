"""Secure Boot during an installation and after it.

A VM that should run with Secure Boot (``vm.secureboot``) installs with it on when its installer chain
is signed: shim, the distribution-signed GRUB and a signed kernel (an image's ``signedKernel``, true
for distribution installers). WinPE boots through wimboot, which nobody signs, and an image may say its
kernel is unsigned: such a VM installs with Secure Boot off, and a target that can turns it on in a
step of its own (``enable_secure_boot``) while the machine is off, after the OS reports installed and
before its first boot, so the installed OS never runs without it (``TargetType.secure_boot_after_install``).
A target that cannot keeps Secure Boot as asked from the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from octoprov.errors import TransientError
from octoprov.targets import registry

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.taskspec import TaskSpec

STEP = "enable_secure_boot"
POWER_OFF_WAIT_S = 240  # how long the step waits for the installer to power off, within a step's lease


def wait_until_off(ctx: TaskContext, is_off: Callable[[], bool], poll_s: float,
                   refresh: Callable[[], object] = lambda: None) -> None:
    """Until the installer has powered the machine off (``is_off``, read again by ``refresh`` after each
    pause). Still on after ``POWER_OFF_WAIT_S`` is a transient failure, retried: WinPE may still be
    shutting down. The same wait for every target that turns Secure Boot on after an install."""
    deadline = time.monotonic() + POWER_OFF_WAIT_S
    while not is_off():
        ctx.check_cancelled()
        if time.monotonic() > deadline:
            raise TransientError(f"{ctx.hostname} is still running {POWER_OFF_WAIT_S} s after its installer "
                                 "reported the OS installed; it must power off for Secure Boot to be turned on")
        time.sleep(poll_s)
        refresh()


def wanted(spec: TaskSpec, machine_secure_boot: bool = False) -> bool:
    """The task's machine should end up with Secure Boot on: a VM's ``vm.secureboot`` (VmSpec settles None:
    on for generation 2), a bare-metal machine's ``secureBoot`` flag (``machine_secure_boot``)."""
    if not registry.get(spec.target_type).makes_vms:
        return machine_secure_boot
    return bool(spec.vm is not None and spec.vm.secureboot)


def installer_signed(os_type: str, signed_kernel: bool, signed_media: bool = False) -> bool:
    """Whether firmware that enforces Secure Boot will start the task's installer chain: Microsoft-signed
    installation media (``signed_media``), or a Linux installer with a signed kernel (shim and GRUB)."""
    return signed_media or (os_type != "windows" and signed_kernel)


def signed_media(target_type: str, node_options: dict[str, Any] | None) -> bool:
    """The target boots this node's tasks from signed installation media (Hyper-V's ISO mode)."""
    boots_media = registry.get(target_type).boots_signed_media
    return boots_media is not None and bool(boots_media(node_options or {}))


def after_install(spec: TaskSpec, os_type: str, signed_kernel: bool, *, cloud_image: bool = False,
                  machine_secure_boot: bool = False, media: bool = False) -> bool:
    """Secure Boot is turned on after the installation: wanted, the installer unsigned, the target able to."""
    return (not cloud_image and wanted(spec, machine_secure_boot)
            and not installer_signed(os_type, signed_kernel, media)
            and registry.get(spec.target_type).secure_boot_after_install)


def during_install(spec: TaskSpec, os_type: str, signed_kernel: bool, *, cloud_image: bool = False,
                   machine_secure_boot: bool = False, media: bool = False) -> bool:
    """Secure Boot is on while the machine installs (for a VM, from its creation)."""
    return wanted(spec, machine_secure_boot) and not after_install(
        spec, os_type, signed_kernel, cloud_image=cloud_image, machine_secure_boot=machine_secure_boot, media=media)


def after_install_for(spec: TaskSpec, os_type: str, node_options: dict[str, Any] | None, *,
                      signed_kernel: bool = True, cloud_image: bool = False) -> bool:
    """``after_install`` from a task's node options, read in one place for the step plan, the task's
    context and its answer files: a bare-metal machine's ``secureBoot`` flag and boot method, a node's ISO
    mode."""
    options = node_options or {}
    if spec.options.boot_method:  # a bare-metal task's own boot method over its machine's
        options = {**options, "bootMethod": spec.options.boot_method}
    return after_install(spec, os_type, signed_kernel, cloud_image=cloud_image,
                         machine_secure_boot=bool(options.get("secureBoot")),
                         media=signed_media(spec.target_type, options))
