"""The ordered steps of a task, as the task detail view shows them.

Work steps run in a worker; wait steps are completed by the machine's status callbacks
(``event``) and carry a deadline. ``phase`` is the task's state while that step is current,
so the task's state follows from where it is in its step list.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov import states
from octoprov.targets import registry

if TYPE_CHECKING:
    from octoprov.taskspec import TaskSpec

WORK, WAIT = "work", "wait"


@dataclass(frozen=True)
class StepDef:
    name: str
    title: str
    kind: str
    phase: str
    event: str | None = None


# callback events a machine may post, in the order they happen (a cloud image has no installer: it posts
# first_boot when it comes up, then os_installed once cloud-init has configured it)
EVENTS = ("installer_started", "os_installed", "first_boot", "domain_joined")

# A network-booted machine's OS disk goes first in its boot order once the OS is installed. The step follows
# the last wait step (the first boot; the domain join): a task waits for the machine's reports in their order,
# and a machine posts os_installed, first_boot and domain_joined seconds apart, without retrying a report that
# came out of order, so a work step between two of them could lose the second. Until it runs, the task is
# active and its reboots get the local-boot answer of the PXE services.
BOOT_FROM_DISK = StepDef("boot_from_disk", "Boot from disk first", WORK, states.CONFIGURING)


# Secure Boot turned on between the OS reporting installed and its first boot (octoprov/secureboot.py): the
# machine powers itself off after os_installed (WinPE shuts down instead of rebooting), so no report can come
# while this step runs; it starts the machine again with Secure Boot enforced.
ENABLE_SECURE_BOOT = StepDef("enable_secure_boot", "Turn Secure Boot on", WORK, states.INSTALLING)


def plan(spec: TaskSpec, node_name: str | None, os_type: str, *, cloud_image: bool = False,
         secure_boot_after_install: bool = False) -> list[StepDef]:
    windows = os_type == "windows"
    vm = registry.get(spec.target_type).makes_vms
    domain = spec.domain
    joins = domain.join
    post = spec.post_install
    if vm:
        steps = [StepDef("create_vm", f"Create VM on {node_name}", WORK, states.CREATING_VM)]
    else:
        steps = [StepDef("register_machine", "Register machine", WORK, states.CREATING_VM)]
    if joins and domain.method == "offline":
        steps.append(StepDef("prepare_domain_join", "Prepare offline domain join", WORK, states.CREATING_VM))
    if cloud_image:  # boots from its own disk: no answer file, no PXE, no installer to wait for
        steps += [
            StepDef("power_on", "Start VM", WORK, states.CREATING_VM),
            StepDef("first_boot", "First boot from the cloud image", WAIT, states.BOOTING, "first_boot"),
            StepDef("os_install", "Configuration by cloud-init", WAIT, states.INSTALLING, "os_installed"),
        ]
    else:
        steps += _install_steps(windows, vm)
        if secure_boot_after_install:
            steps.insert(next(i for i, s in enumerate(steps) if s.name == "os_install") + 1, ENABLE_SECURE_BOOT)
    if joins:
        steps.append(StepDef("domain_join", "Domain join", WAIT, states.CONFIGURING, "domain_joined"))
    if not cloud_image and registry.get(spec.target_type).boot_order:
        steps.append(BOOT_FROM_DISK)
    if post.install_agent:
        steps.append(StepDef("install_agent", "Install agent", WORK, states.CONFIGURING))
    for index, package in enumerate(post.run_packages):
        steps.append(StepDef(f"package_{index}", f"Post-install: package {package.package_id}", WORK,
                             states.CONFIGURING))
    for index, script in enumerate(post.run_scripts):
        steps.append(StepDef(f"script_{index}", f"Post-install: script {script.name}", WORK, states.CONFIGURING))
    if post.add_to_groups:
        steps.append(StepDef("add_to_groups", "Add to groups", WORK, states.CONFIGURING))
    steps.append(StepDef("finish", "Finish", WORK, states.CONFIGURING))
    return steps


def first_run(planned: list[StepDef]) -> list[str]:
    """The work steps a new task's first message carries: those before its first wait step. Every step of a new
    task is pending, so this is what ``pipeline.next_work_run`` would read back from its stored steps."""
    return [step.name for step in itertools.takewhile(lambda step: step.kind == WORK, planned)]


def _install_steps(windows: bool, vm: bool) -> list[StepDef]:
    """From the answer file to the installed OS's first boot: an installation booted from the network."""
    return [
        StepDef("render_answers", "Generate answer file", WORK, states.CREATING_VM),
        StepDef("register_mac", "Register MAC for PXE boot", WORK, states.CREATING_VM),
        StepDef("power_on", "Start VM" if vm else "Power on machine", WORK, states.CREATING_VM),
        StepDef("installer_started", "WinPE loaded" if windows else "Installer started", WAIT, states.BOOTING,
                "installer_started"),
        StepDef("os_install", "Windows installation" if windows else "OS installation", WAIT, states.INSTALLING,
                "os_installed"),
        StepDef("first_boot", "First boot and OOBE" if windows else "First boot", WAIT, states.INSTALLING,
                "first_boot"),
    ]


def is_post_install(step_name: str) -> bool:
    """Steps that run on the installed machine: the agent, group membership, packages, scripts."""
    kind, _, index = step_name.partition("_")
    return step_name in ("install_agent", "add_to_groups") or (kind in ("package", "script") and index.isdigit())


def post_install_item(spec: TaskSpec, step_name: str) -> dict[str, Any] | None:
    """The postInstall entry a step runs (the agent, a package or a script), shaped as the request
    spells it: the post-install runners of every target read these camelCase keys."""
    post = spec.post_install
    if step_name == "install_agent":
        return {"type": "agent"}
    if step_name == "add_to_groups":
        return {"type": "groups", "groupIds": list(post.add_to_groups)}
    kind, _, index = step_name.partition("_")
    if kind == "package" and index.isdigit():
        return {"type": "package", **post.run_packages[int(index)].model_dump(mode="json", by_alias=True)}
    if kind == "script" and index.isdigit():
        return {"type": "script", **post.run_scripts[int(index)].model_dump(mode="json", by_alias=True)}
    return None
