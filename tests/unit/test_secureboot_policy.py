"""When a VM installs with Secure Boot on, and when it is turned on after the installation instead."""

from __future__ import annotations

import pytest

from octoprov import secureboot, steps
from tests.support.examples import task_spec

GEN2_SECURE = {"vm": {"generation": 2, "secureboot": True, "disks": [{"sizeGb": 60, "purpose": "os"}]}}
GEN2_PLAIN = {"vm": {"generation": 2, "secureboot": False, "disks": [{"sizeGb": 60, "purpose": "os"}]}}


@pytest.mark.parametrize("target_type, vm, os_type, signed_kernel, cloud, during, after", [
    ("kvm", GEN2_SECURE, "windows", True, False, False, True),  # wimboot is unsigned: on after the install
    ("kvm", GEN2_SECURE, "linux", True, False, True, False),  # shim, GRUB, a signed kernel: on throughout
    ("kvm", GEN2_SECURE, "linux", False, False, False, True),  # an image with an unsigned kernel
    ("kvm", GEN2_SECURE, "linux", False, True, True, False),  # a cloud image boots its own disk's loader
    ("kvm", GEN2_PLAIN, "windows", True, False, False, False),  # not asked for
    ("hyperv", GEN2_SECURE, "windows", True, False, False, True),  # WinPE over PXE
])
def test_during_and_after(target_type, vm, os_type, signed_kernel, cloud, during, after):
    spec = task_spec(target_type, "web01", **vm)
    assert secureboot.during_install(spec, os_type, signed_kernel, cloud_image=cloud) is during
    assert secureboot.after_install(spec, os_type, signed_kernel, cloud_image=cloud) is after


def test_signed_media_and_machines():
    """Hyper-V's ISO mode boots Microsoft-signed media: on throughout. A bare-metal machine follows its flag."""
    spec = task_spec("hyperv", "web01", **GEN2_SECURE)
    assert secureboot.signed_media("hyperv", {"hyperv": {"bootMode": "iso", "installIso": "D:\\ws.iso"}})
    assert not secureboot.signed_media("hyperv", {}) and not secureboot.signed_media("kvm", {})
    assert secureboot.during_install(spec, "windows", True, media=True)
    assert not secureboot.after_install(spec, "windows", True, media=True)
    metal = task_spec("baremetal", "web01")
    assert secureboot.after_install(metal, "windows", True, machine_secure_boot=True)
    assert not secureboot.wanted(metal) and secureboot.during_install(metal, "linux", True, machine_secure_boot=True)


def test_the_step_sits_between_the_install_and_the_first_boot():
    """The machine powers itself off after os_installed and cannot report first_boot before the step starts it."""
    spec = task_spec("kvm", "web01", **GEN2_SECURE)
    planned = [step.name for step in steps.plan(spec, "NODE", "windows", secure_boot_after_install=True)]
    assert planned[planned.index("os_install"):planned.index("os_install") + 3] == [
        "os_install", "enable_secure_boot", "first_boot"]
    assert "enable_secure_boot" not in [step.name for step in steps.plan(spec, "NODE", "windows")]
