"""Boot answers kept per MAC by each serving process (octoprov/netboot/answercache.py) are never stale: two API
servers of two processes each on one database, both asked until they keep the machine's install script; a
third process (this test, as a worker would) records the OS installed; the very next request to either
server answers local boot. And back again when the install is retried."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import update

from octoprov.db import Database
from octoprov.models import TaskStep
from tests.conftest import BACKENDS
from tests.support.live import start_api_beside, start_live_api
from tests.support.stack import API

MAC = "52:54:00:0b:00:75"
INSTALL_WINDOW = ["register_machine", "render_answers", "register_mac", "power_on"]


def _set_steps(database: Database, task_id: int, names: list[str], status: str) -> None:
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.name.in_(names))
                        .values(status=status))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_next_boot_request_to_any_api_process_sees_a_state_change(backend, request, tmp_path):
    url = request.getfixturevalue("postgres_server").create_database() if backend == "postgresql" else None
    first = start_live_api(tmp_path / "var", url, extra_env={"OCTOPROV_API_WORKERS": "2"})
    try:
        second = start_api_beside(first)
        try:
            images = first.data_dir / "images" / "tiny"
            images.mkdir(parents=True)
            for name in ("vmlinuz", "initrd.gz"):
                (images / name).write_bytes(b"x" * 100)
            image = requests.post(first.url + API + "/images", headers=first.headers, timeout=30, json={
                "name": "Tiny", "osType": "linux", "imagePath": "tiny/vmlinuz", "kernelPath": "tiny/vmlinuz",
                "initrdPath": "tiny/initrd.gz"}).json()["id"]
            task = requests.post(first.url + API + "/tasks", headers=first.headers, timeout=30, json={
                "hostname": "cache-01", "targetType": "baremetal", "macAddress": MAC, "os": {"imageId": image}})
            assert task.status_code == 201, task.text
            task_id = task.json()["id"]
            database = Database(first.env.get("OCTOPROV_DATABASE_URL")
                                or f"sqlite:///{first.data_dir / 'octoprov.sqlite'}")

            def answers() -> set[str]:
                """What every process of both servers answers now: enough requests to reach each of them."""
                seen = set()
                for api in (first, second):
                    for _ in range(8):
                        script = requests.get(api.url + API + "/pxe/boot", params={"mac": MAC}, timeout=30).text
                        seen.add("install" if "kernel" in script else "localboot" if "sanboot" in script else script)
                return seen

            try:
                assert answers() == {"localboot"}  # before its boot configuration is ready
                _set_steps(database, task_id, INSTALL_WINDOW, "done")
                assert answers() == {"install"}
                assert answers() == {"install"}  # kept by now, in every process
                _set_steps(database, task_id, ["installer_started", "os_install"], "done")
                assert answers() == {"localboot"}  # the very next requests, in every process
                _set_steps(database, task_id, ["os_install"], "running")  # an install retried
                assert answers() == {"install"}
            finally:
                database.dispose()
        finally:
            second.stop()
    finally:
        first.stop()
