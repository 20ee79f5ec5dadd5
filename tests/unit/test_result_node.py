"""The node a task produces (octoprov/results.py): created once, a machine installed again under its host name is
the same node brought up to date, and a host name a hypervisor holds gets the task id appended. Both databases."""

from __future__ import annotations

from sqlalchemy import select

from octoprov.models import Image, Node, Task
from octoprov.results import MACHINE, ensure_result_node, result_node


def _task(session, hostname: str, image_id: int | None, **columns) -> int:
    task = Task(hostname=hostname, target_type="fake", status="running", config={"os": {"imageId": image_id}},
                **columns)
    session.add(task)
    session.flush()
    return task.id


def _image(session) -> int:
    image = Image(name="Debian 12", os_type="linux", image_path="debian/vmlinuz")
    session.add(image)
    session.flush()
    return image.id


def test_a_task_gets_its_node_once(database):
    with database.session() as session:
        image = _image(session)
        task_id = _task(session, "web-01", image, mac_address="52:54:00:00:00:01", hypervisor_node_id=None)
        first = ensure_result_node(session, task_id, image)
        again = ensure_result_node(session, task_id, image)
        assert first == again and first.name == "web-01"
        node = session.get_one(Node, first.id)
        assert (node.role, node.kind, node.os_name, node.hostname) == (MACHINE, "linux", "Debian 12", "web-01")
        assert node.mac_addresses == ["52:54:00:00:00:01"] and node.ip_addresses == []
        assert node.options == {"taskId": task_id}
        assert session.get_one(Task, task_id).result_node_id == first.id


def test_a_machine_installed_again_is_the_same_node_brought_up_to_date(database):
    with database.session() as session:
        image = _image(session)
        first_task = _task(session, "db-01", image)
        node_id = ensure_result_node(session, first_task, image).id
        session.get_one(Node, node_id).ip_addresses = ["198.51.100.7"]
        session.flush()
        second_task = _task(session, "db-01", None, mac_address="52:54:00:00:00:02")
        loaded = session.get_one(Task, second_task)  # the ORM caller's view is read again after the write
        node = result_node(session, loaded)
        assert node.id == node_id and loaded.result_node_id == node_id
        assert (node.kind, node.os_name, node.ip_addresses) == ("windows", None, [])  # no image: Windows
        assert node.options == {"taskId": second_task} and node.mac_addresses == ["52:54:00:00:00:02"]


def test_a_host_name_a_hypervisor_holds_gets_the_task_id(database):
    with database.session() as session:
        hypervisor = Node(name="hv-01", role="hypervisor", kind="kvm", endpoint="qemu:///system")
        session.add(hypervisor)
        session.flush()
        task_id = _task(session, "hv-01", None, hypervisor_node_id=hypervisor.id)
        ref = ensure_result_node(session, task_id, None)
        assert ref.name == f"hv-01 (task {task_id})" and ref.id != hypervisor.id
        node = session.get_one(Node, ref.id)
        assert node.options == {"taskId": task_id, "hypervisorNodeId": hypervisor.id}
        assert session.scalar(select(Node.role).where(Node.id == hypervisor.id)) == "hypervisor"
