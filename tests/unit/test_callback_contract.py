"""The status-callback contract as the README and docs/operations.md write it down, checked against the
code: which event completes which wait step (octoprov/steps.py), the body's fields (the API's
StatusCallback), and the task view's ``awaitsEvent`` on each step. The docs cannot drift from the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.resources.pxe import SshReport, StatusCallback
from api.runtime import DISPATCH
from octoprov import steps
from octoprov.taskspec import TaskSpec
from tests.conftest import sqlite_database
from tests.support.examples import spec_example, task_spec
from tests.support.inline_pipeline import InlineQueue
from tests.support.library import API, created

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "docs" / "operations.md")
TABLE_HEAD = "| event | completes the wait step |"


def planned_waits() -> dict[str, set[str]]:
    """event -> the wait step names it completes, over every kind of plan steps.py makes: Windows and
    Linux, from the network and from a cloud image, with and without a domain join."""
    windows_join = TaskSpec.model_validate(spec_example(), context={"os_type": "windows"})
    specs = [(windows_join, "windows", False), (task_spec("kvm", "lx-01", os_type="linux"), "linux", False),
             (task_spec("kvm", "lx-02", os_type="linux"), "linux", True),
             (task_spec("baremetal", "WIN-01"), "windows", False)]
    waits: dict[str, set[str]] = {}
    for spec, os_type, cloud_image in specs:
        for step in steps.plan(spec, "node", os_type, cloud_image=cloud_image):
            assert (step.kind == steps.WAIT) == (step.event is not None), step
            if step.event:
                waits.setdefault(step.event, set()).add(step.name)
    return waits


def documented_table(path: Path) -> dict[str, set[str]]:
    """The rows of the event table in ``path``: `event` | `step` | ..."""
    lines = path.read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(TABLE_HEAD))
    table: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        event, step = (re.fullmatch(r"\s*`([a-z_]+)`\s*", cell) for cell in line.split("|")[1:3])
        assert event and step, f"{path.name}: a row of the event table names no `event` and `step`: {line}"
        table.setdefault(event.group(1), set()).add(step.group(1))
    return table


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_the_documented_event_table_is_the_one_steps_py_plans(path):
    assert documented_table(path) == planned_waits()


def test_every_event_a_machine_may_post_is_documented():
    for path in DOCS:
        assert set(documented_table(path)) == set(steps.EVENTS), path.name
    assert "`progress`" in DOCS[1].read_text()


def test_the_documented_body_names_every_field_of_the_callback():
    text = DOCS[1].read_text()
    section = text[text.index("## The status callback"):]
    section = section[:section.index("\n## ", 1)]
    for name, field in {**StatusCallback.model_fields, **SshReport.model_fields}.items():
        assert f"`{field.alias or name}`" in section, f"{field.alias or name} is not in the documented body"
    assert "(docs/operations.md#the-status-callback)" in DOCS[0].read_text()  # the README links to it


# -- awaitsEvent in the task view ---------------------------------------------------------------------


@pytest.fixture
def database(settings):
    """SQLite only (overrides the conftest fixture that also runs each test on PostgreSQL)."""
    yield from sqlite_database(settings)


def test_the_task_view_shows_the_event_each_wait_step_awaits(client, app, settings):
    app.extensions[DISPATCH] = InlineQueue()  # nothing reaches a broker
    (settings.effective_images_dir / "install.wim").write_bytes(b"wim")
    image = created(client, "images", {"name": "WS2025", "osType": "windows", "imagePath": "install.wim"})
    node = created(client, "hypervisors", {"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    task = created(client, "tasks", {"hostname": "EV-01", "targetType": "fake", "hypervisorNodeId": node["id"],
                                     "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
                                     "os": {"imageId": image["id"]}})
    view = client.get(f"{API}/tasks/{task['id']}").json
    assert {step["name"]: step["awaitsEvent"] for step in view["steps"]} == {
        "create_vm": None, "render_answers": None, "register_mac": None, "power_on": None,
        "installer_started": "installer_started", "os_install": "os_installed", "first_boot": "first_boot",
        "install_agent": None, "finish": None}
    step_model = client.get("/api/v1/swagger.json").json["definitions"]["TaskView"]["properties"]["steps"]["items"]
    assert "awaitsEvent" in step_model["required"] and step_model["properties"]["awaitsEvent"]["x-nullable"]
