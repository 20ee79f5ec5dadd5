"""A target type is one declaration: registering it is all the API, the UI, the Celery queues and
the dry run need. The throwaway target below is declared here and nowhere else."""

from __future__ import annotations

import json

import pytest

from octoprov.context import TaskContext
from octoprov.targets import registry
from octoprov.targets.fake import fake_target
from tests.support.examples import spec_example

TASKS = "/api/v1/provisioning/tasks"


def _throwaway_plan(ctx: TaskContext) -> tuple[dict[str, str], list[str]]:
    return {"throwaway.txt": f"{ctx.hostname} on {ctx.node.name if ctx.node else '-'}\n"}, ["planned by the throwaway"]


@pytest.fixture
def throwaway():
    target = registry.register(registry.TargetType(
        name="throwaway", label="Throwaway (test only)", queue="throwaway-pool", makes_vms=True,
        node_kinds=("fake",), serves_answers=False, driver=fake_target, plan=_throwaway_plan))
    yield target
    registry.unregister(target.name)


def _body(client, settings) -> dict:
    (settings.effective_images_dir / "a.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={"name": "x", "osType": "windows",
                                                             "imagePath": "a.wim"}).json["id"]
    node = client.post("/api/v1/provisioning/hypervisors", json={"name": "F", "kind": "fake",
                                                                 "endpoint": "fake://lab"}).json["id"]
    body = spec_example("dhcp", image_id=image, node_id=node)
    body["postInstall"] = {"installAgent": False}
    body["targetType"] = "throwaway"
    return body


def test_an_unregistered_target_type_is_refused(client, settings):
    response = client.post(TASKS, query_string={"dryRun": "true"}, json=_body(client, settings))
    assert response.status_code == 400
    assert "targetType" in response.json["errors"]


def test_a_registered_target_is_accepted_by_the_dry_run(client, settings, throwaway):
    response = client.post(TASKS, query_string={"dryRun": "true"}, json=_body(client, settings))
    assert response.status_code == 200, response.json
    plan = response.json
    assert plan["task"]["targetType"] == "throwaway"
    assert plan["artifacts"]["throwaway.txt"] == "SQL-SERVER-01 on F\n"
    assert "planned by the throwaway" in json.loads(plan["artifacts"]["plan.json"])["notes"]


def test_a_registered_target_is_routed_to_its_queue(settings, throwaway):
    from workers.app import make_celery
    from workers.dispatch import Dispatcher, queue_for

    assert queue_for("throwaway") == "throwaway-pool"
    app = make_celery(settings)
    assert "throwaway-pool" in {queue.name for queue in app.conf.task_queues}
    sent = []

    class Recorder:
        def send_task(self, name, args, queue, **options):
            sent.append((name, queue))

    Dispatcher(Recorder()).rollback(7, "throwaway")  # type: ignore[arg-type]
    assert sent == [("octoprov.rollback", "throwaway-pool")]


def test_a_registered_target_is_offered_by_the_ui(app, throwaway):
    page = app.test_client().get("/ui/tasks/new")
    assert page.status_code == 200
    assert 'value="throwaway"' in page.text and "Throwaway (test only)" in page.text


def test_every_list_of_targets_comes_from_the_registry(app, settings):
    """The built-in targets appear exactly as declared wherever targets are listed."""
    from api.ui import vocabulary
    from workers.app import make_celery

    declared = registry.names()
    assert set(declared) >= {"hyperv", "kvm", "baremetal", "fake"}
    with app.test_request_context():
        assert tuple(vocabulary()["targets"]) == declared
    assert {queue.name for queue in make_celery(settings).conf.task_queues} == set(registry.queues())
    for target in registry.all_types():
        assert callable(target.driver) and callable(target.plan)
