"""The `octoprov` command line, run as a user would run it."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from octoprov.settings import env_example
from tests.support import ROOT
from tests.support.examples import ADMIN_PASSWORD, spec_example, store_post_install_in
from tests.support.live import free_port, octoprov, start_live_api
from tests.support.processes import stop_group
from tests.support.stack import API

ROOT = ROOT


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPROV_")}
    return {**env, "OCTOPROV_DATA_DIR": str(tmp_path / "var")}


def test_env_example_is_generated_from_settings():
    assert (ROOT / ".env.example").read_text() == env_example()
    assert "OCTOPROV_DATABASE_URL" in env_example() and "OCTOPROV_BROKER_URL" in env_example()


def test_env_example_shows_each_group_as_a_section():
    from octoprov.settings import GROUPS, Settings, env_name

    text = env_example()
    headings = [line for line in text.splitlines() if line.startswith("# -- ")]
    assert [h.removeprefix("# -- ").rstrip(" -") for h in headings] == [g.model_config["title"] for g in GROUPS]
    assert "Deadlines of the wait steps" in text and "Octofleet" in text
    for name in Settings.model_fields:
        assert text.count(f"{env_name(name)}=") == 1, name


def test_db_upgrade_token_and_tasks(tmp_path):
    env = _env(tmp_path)
    assert "revision head" in octoprov("db", "upgrade", env=env).stdout
    key_file = tmp_path / "var" / "secret.key"
    token = octoprov("token", "create", "ops", env=env).stdout.strip()
    assert token.startswith("opv_")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    (tmp_path / "var" / "images" / "a.wim").write_bytes(b"wim")
    request = spec_example("static")
    request.update(targetType="baremetal", macAddress="0015.5d01.0203")
    del request["vm"], request["hypervisorNodeId"]
    image_file = tmp_path / "image.json"
    # register the image through the domain layer the CLI uses
    from octoprov import images
    from octoprov.db import Database
    from octoprov.settings import Settings

    settings = Settings.from_env(env)
    with Database.from_settings(settings).session() as session:
        image = images.register_image(session, settings.effective_images_dir,
                                      images.ImageSpec(name="x", os_type="windows", image_path="a.wim"))
        request["os"]["imageId"] = image.id
        request["postInstall"] = spec_example(**store_post_install_in(session))["postInstall"]
    image_file.write_text(json.dumps(request))
    created = json.loads(octoprov("task", "create", "--file", str(image_file), env=env).stdout)
    assert created["status"] == "pending" and created["macAddress"] == "00:15:5d:01:02:03"
    assert ADMIN_PASSWORD not in json.dumps(created)

    listing = octoprov("task", "list", env=env).stdout
    assert "SQL-SERVER-01" in listing and "pending" in listing and "(1 of 1)" in listing
    shown = json.loads(octoprov("task", "show", str(created["id"]), "--output", "json", env=env).stdout)
    assert shown["id"] == created["id"]
    missing = octoprov("task", "show", "999", env=env, check=False)
    assert missing.returncode != 0 and "no task with id 999" in missing.stderr

    request["hostname"] = "way-too-long-for-netbios"
    image_file.write_text(json.dumps(request))
    refused = octoprov("task", "create", "--file", str(image_file), env=env, check=False)
    assert refused.returncode != 0 and "hostname" in refused.stderr


def test_up_runs_api_worker_and_beat_and_prints_a_working_token(tmp_path):
    env = {**_env(tmp_path), "OCTOPROV_SECRET_KEY": Fernet.generate_key().decode()}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        token = None
        for line in process.stdout:
            if line.startswith("API token: "):
                token = line.split(": ", 1)[1].strip()
                break
        assert token
        url = f"http://127.0.0.1:{port}/api/v1/provisioning/templates"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "API did not come up"
                time.sleep(0.3)
        assert response.status_code == 200
        assert requests.get(url, timeout=5).status_code == 401
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3  # api, worker, beat
        _run_fake_task_as_the_readme_shows(f"http://127.0.0.1:{port}/api/v1/provisioning", token,
                                           tmp_path / "var")
    finally:
        stop_group(process)
    assert process.returncode == 0
    # a second start reuses the same token
    token_file = tmp_path / "var" / "api-token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_up_takes_the_work_queued_while_it_was_stopped(tmp_path):
    """The embedded broker (DATA_DIR/broker.sqlite) keeps a message while no worker runs: a task queued by an
    API alone is started by the next `octoprov up`. The periodic job is held off for an hour, so only the
    kept message can start it."""
    embedded = {"OCTOPROV_DATABASE_URL": "", "OCTOPROV_BROKER_URL": "", "OCTOPROV_REQUEUE_AFTER_S": "3600"}
    api = start_live_api(tmp_path / "var", extra_env=embedded)
    try:
        task_id = _submit_fake_task(api.url + API, api.token, tmp_path / "var")
    finally:
        api.stop()
    assert (tmp_path / "var" / "broker.sqlite").is_file()
    process = subprocess.Popen([sys.executable, "-m", "cli", "up"], env=api.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_completed(api.url + API, api.token, task_id)
    finally:
        stop_group(process)


def _run_fake_task_as_the_readme_shows(api: str, token: str, data_dir: Path) -> None:
    """The README's walk-through, on the embedded stack: a fake node, an image, a task to completed."""
    _wait_completed(api, token, _submit_fake_task(api, token, data_dir))


def _submit_fake_task(api: str, token: str, data_dir: Path) -> int:
    """A fake node, an image and a task of the fake target on them; the task's id."""
    headers = {"Authorization": f"Bearer {token}"}
    node = requests.post(f"{api}/hypervisors", headers=headers, timeout=30,
                         json={"name": "LAB", "kind": "fake", "endpoint": "fake://lab"}).json()
    (data_dir / "images" / "demo.wim").write_text("wim")
    image = requests.post(f"{api}/images", headers=headers, timeout=30,
                          json={"name": "Demo", "osType": "windows", "imagePath": "demo.wim"}).json()
    task = requests.post(f"{api}/tasks", headers=headers, timeout=30, json={
        "hostname": "DEMO-01", "targetType": "fake", "hypervisorNodeId": node["id"],
        "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]}, "os": {"imageId": image["id"]}}).json()
    task_id: int = task["id"]
    return task_id


def _wait_completed(api: str, token: str, task_id: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 120
    current: dict = {"status": "not answered: the API is not up"}
    while True:
        with contextlib.suppress(requests.ConnectionError):  # the API may still be starting
            current = requests.get(f"{api}/tasks/{task_id}", headers=headers, timeout=30).json()
        if current["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, f"still {current['status']} at {current.get('currentStep')}"
        time.sleep(0.5)
    assert current["status"] == "completed", current
    assert all(step["status"] == "done" for step in current["steps"])
