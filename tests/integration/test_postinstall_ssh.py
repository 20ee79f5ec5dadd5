"""Post-install over SSH against a real OpenSSH server on a loopback port, run by a real worker:
the machine's first-boot callback reports its address and SSH host key (as an installed Linux
would), then the agent installer, a library script with parameters, in order, log their output
into the task; a failing script fails its step with its output; a host showing a key other than
the reported one is refused.

The "machine" is this host's sshd (the scripts run here as root, so they only write into the
test's own folder). Bare-metal tasks without a BMC: nothing to power, no network boot needed.
"""

from __future__ import annotations

import pytest
import requests

from octoprov import deploykey
from octoprov.settings import Settings
from tests.support import sshd
from tests.support.stack import API, flush_redis, start_stack

AGENT = """#!/bin/sh
# a stand-in agent installer: records its arguments where the test looks
printf '%s\\n' "$@" > "$1/agent-installed"
echo "agent installed with $# arguments"
"""
SCRIPT = """# writes its parameter, as given, into the test's folder
printf '%s' "$GREETING" > "$TARGET_DIR/greeting"
echo "greeting written"
"""
PACKAGE = """# a stand-in package: fails on its first run (as a flaky mirror would), then installs
if [ ! -e "$TARGET_DIR/tried" ]; then touch "$TARGET_DIR/tried"; echo "mirror not reachable"; exit 1; fi
printf '%s' "$INSTANCE_NAME" > "$TARGET_DIR/instance"
echo "package installed for instance $INSTANCE_NAME"
"""
FAILING = """echo "checking the firewall"
echo "boom: nftables is missing" >&2
exit 3
"""
# if it were pasted as code, it would create "pwned" files in the test's folder (HERE is replaced)
HOSTILE = "it's $(touch HERE/pwned1) `touch HERE/pwned2` \"quoted\"; touch HERE/pwned3 \\ ünïcødé\nline 2"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, postgres_server, redis_url):
    if sshd.unusable_reason():
        pytest.skip(sshd.unusable_reason())
    base = tmp_path_factory.mktemp("postinstall")
    scripts = base / "scripts"
    scripts.mkdir()
    (scripts / "greet.sh").write_text(SCRIPT)
    (scripts / "check-firewall.sh").write_text(FAILING)
    flush_redis(redis_url)
    stack = start_stack(base / "stack", postgres_server, redis_url, scripts_dir=str(scripts),
                        linux_agent_args=f"{base} --site 'lab one'")
    agent = stack.data_dir / "images" / "agent" / "octoprov-agent.sh"
    agent.parent.mkdir(parents=True)
    agent.write_text(AGENT)
    (stack.data_dir / "images" / "tiny.img").write_bytes(b"image")
    key = deploykey.public_key(Settings(data_dir=stack.data_dir))
    stack.start_worker(concurrency=2, queues="default,baremetal")
    stack.image_id = stack.call("POST", "/images", 201, json={"name": "Tiny Linux", "osType": "linux",
                                                              "imagePath": "tiny.img"}).json()["id"]
    stack.package_id = stack.call("POST", "/packages", 201, json={
        "name": "sqlish", "osType": "linux", "script": PACKAGE, "idempotent": True,
        "parametersSchema": {"type": "object", "properties": {"INSTANCE_NAME": {"type": "string"},
                                                              "TARGET_DIR": {"type": "string"}},
                             "required": ["INSTANCE_NAME", "TARGET_DIR"]}}).json()["id"]
    stack.group_id = stack.call("POST", "/groups", 201, json={"name": "web servers"}).json()["id"]
    with sshd.sshd(base / "sshd", authorized=(key,)) as server:
        stack.sshd, stack.base = server, base
        yield stack
    stack.stop()


def first_boot(stack, task_id: int, host_key: str) -> None:
    """What an installed machine reports: the callbacks up to first boot, the last with its facts."""
    stack.wait_step(task_id, "installer_started", "running", timeout=60)
    token = stack.callback_token(task_id)
    for event in ("installer_started", "os_installed", "first_boot"):
        body = {"taskId": task_id, "token": token, "event": event, "status": "ok"}
        if event == "first_boot":
            body.update(addresses=["127.0.0.1"], ssh={"port": stack.sshd.port, "hostKeys": [host_key]})
        answer = requests.post(stack.api.url + API + "/pxe/status", json=body, timeout=30)
        assert answer.status_code == 200 and answer.json()["accepted"], answer.text


def task(stack, hostname: str, mac: str, scripts: list[dict], **post_install) -> int:
    return stack.call("POST", "/tasks", 201, json={
        "hostname": hostname, "targetType": "baremetal", "macAddress": mac, "os": {"imageId": stack.image_id},
        "postInstall": {"installAgent": True, "runScripts": scripts, "retries": 1, **post_install}}).json()["id"]


def logs(stack, task_id: int) -> list[dict]:
    answer = stack.call("GET", f"/tasks/{task_id}/logs", 200).json()
    return answer["items"] if isinstance(answer, dict) else answer


def test_agent_package_script_and_group_run_in_order_with_their_output_logged(lab):
    hostile = HOSTILE.replace("HERE", str(lab.base))
    task_id = task(lab, "ssh-ok", "52:54:00:5e:00:01",
                   [{"name": "greet.sh", "parameters": {"GREETING": hostile, "TARGET_DIR": str(lab.base)}}],
                   runPackages=[{"packageId": lab.package_id,
                                 "parameters": {"INSTANCE_NAME": "YOURDBSERVER", "TARGET_DIR": str(lab.base)}}],
                   addToGroups=[lab.group_id])
    first_boot(lab, task_id, lab.sshd.host_key)
    done = lab.wait_for(task_id, {"completed", "failed"}, timeout=120)
    entries = logs(lab, task_id)
    assert done["status"] == "completed", (done["errorMessage"], [e["message"] for e in entries])
    # the agent installer got its arguments as the setting gives them, quoting and all
    assert (lab.base / "agent-installed").read_text().splitlines() == [str(lab.base), "--site", "lab one"]
    # the parameter arrived as data: quotes, $(), backticks and all, nothing of it executed
    assert (lab.base / "greeting").read_text() == hostile
    assert not list(lab.base.glob("pwned*"))
    order = [(e["step"], e["message"]) for e in entries if e["message"].startswith("| ")]
    assert order == [("install_agent", "| agent installed with 3 arguments"),
                     ("package_0", "| mirror not reachable"),  # the idempotent package is tried again
                     ("package_0", "| package installed for instance YOURDBSERVER"),
                     ("script_0", "| greeting written")], order
    assert (lab.base / "instance").read_text() == "YOURDBSERVER"
    assert [s["name"] for s in done["steps"]][-4:] == ["package_0", "script_0", "add_to_groups", "finish"]
    node = lab.call("GET", f"/nodes/{done['resultNodeId']}", 200).json()
    assert node["ipAddresses"] == ["127.0.0.1"] and node["hostname"] == "ssh-ok" and node["osType"] == "linux"
    assert node["sshHostKeys"] == [lab.sshd.host_key] and node["macAddresses"] == ["52:54:00:5e:00:01"]
    members = lab.call("GET", f"/groups/{lab.group_id}/members", 200).json()
    member_ids = [m.get("nodeId", m.get("id")) for m in (members["items"] if isinstance(members, dict) else members)]
    assert done["resultNodeId"] in member_ids, members


def test_a_failing_script_fails_its_step_with_its_output(lab):
    task_id = task(lab, "ssh-fail", "52:54:00:5e:00:02", [{"name": "check-firewall.sh"}])
    first_boot(lab, task_id, lab.sshd.host_key)
    done = lab.wait_for(task_id, {"completed", "failed"}, timeout=120)
    assert done["status"] == "failed"
    failed = next(step for step in done["steps"] if step["status"] == "failed")
    assert failed["name"] == "script_0"
    assert "exited with status 3" in done["errorMessage"] and "boom: nftables is missing" in done["errorMessage"]
    messages = [e["message"] for e in logs(lab, task_id)]
    assert "| boom: nftables is missing" in messages and "| checking the firewall" in messages
    assert not any("trying again" in m for m in messages)  # a library script is not repeated


def test_a_host_with_another_key_is_refused(lab):
    other = (lab.base / "sshd" / "client.pub").read_text().split()  # any key but the host's
    task_id = task(lab, "ssh-mitm", "52:54:00:5e:00:03", [])
    first_boot(lab, task_id, f"{other[0]} {other[1]}")
    done = lab.wait_for(task_id, {"completed", "failed"}, timeout=120)
    assert done["status"] == "failed" and "refused" in done["errorMessage"], done["errorMessage"]
    assert next(step for step in done["steps"] if step["status"] == "failed")["name"] == "install_agent"
