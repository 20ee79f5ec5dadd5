"""Where a task's ``boot_from_disk`` step goes: after the last report the machine sends on its own, for
the targets whose boot order Octoprov controls."""

from __future__ import annotations

import pytest

from octoprov import pipeline, steps
from octoprov.models import TaskStep
from octoprov.targets import registry
from tests.support.examples import task_spec


def names(target_type: str, *, cloud_image: bool = False, **sections) -> list[str]:
    spec = task_spec(target_type, "web01", **sections)
    return [step.name for step in steps.plan(spec, "NODE", "windows", cloud_image=cloud_image)]


@pytest.mark.parametrize("target_type", ["kvm", "hyperv", "baremetal"])
def test_a_network_installed_machine_boots_from_disk_after_its_first_boot(target_type):
    planned = names(target_type)
    assert planned[planned.index("first_boot"):] == ["first_boot", "boot_from_disk", "install_agent", "finish"]
    step = next(step for step in steps.plan(task_spec(target_type, "web01"), "NODE", "windows")
                if step.name == "boot_from_disk")
    assert (step.kind, step.title) == (steps.WORK, "Boot from disk first")


def test_after_the_domain_join_the_last_report_of_the_machine():
    """A work step between two reports would make the second out of order: the machine sends them seconds
    apart and does not send one again."""
    planned = names("hyperv", domain={"join": True, "name": "yourdom.local", "method": "offline"})
    assert planned[planned.index("first_boot"):planned.index("first_boot") + 3] == [
        "first_boot", "domain_join", "boot_from_disk"]


def test_not_for_a_cloud_image_nor_a_target_without_a_boot_order():
    assert "boot_from_disk" not in names("kvm", cloud_image=True)  # it boots from its disk from the start
    assert "boot_from_disk" not in names("fake")
    assert [t.name for t in registry.all_types() if t.boot_order] == ["hyperv", "kvm", "vmware", "baremetal"]


@pytest.mark.parametrize(("target_type", "cloud_image", "sections"), [
    ("hyperv", False, {}),
    ("hyperv", False, {"domain": {"join": True, "name": "yourdom.local", "method": "offline"}}),
    ("kvm", True, {}),
    ("baremetal", False, {}),
    ("fake", False, {}),
])
def test_a_new_tasks_first_run_is_what_the_pipeline_would_read_back(target_type, cloud_image, sections):
    """A submission sends the first run from the plan instead of reading the steps it just stored."""
    planned = steps.plan(task_spec(target_type, "web01", **sections), "NODE", "windows", cloud_image=cloud_image)
    stored = [TaskStep(name=step.name, kind=step.kind, status=pipeline.StepStatus.PENDING) for step in planned]
    assert steps.first_run(planned) == pipeline._work_run(stored)
    assert steps.first_run(planned)  # a new task always starts with work
