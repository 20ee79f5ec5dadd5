"""A multi-host rehearsal of the production layout: three workers, each in a network namespace of its
own (a host), two serving the `default` pool and one the `kvm` pool, against one PostgreSQL, one Redis
and the API, which they reach over a bridge at 198.51.100.1 only. 40 tasks of the fake target run to
completion: the `default` workers run the work steps, the `kvm` worker plays the machines (the fake
node's ``machinePool``), whose status callbacks thus come from another host, as real ones do.

The servers are the session's own (tests/support/servers.py, on 127.0.0.1) and the API of tests/support/stack.py; the
bridge's address is served by a relay in this process, which listens inside the hub namespace and
connects to 127.0.0.1 outside it. No namespace touches the host's interfaces; the workers are started
through the image's entry point (docker/entrypoint.sh) and stopped by PID, and every namespace is deleted,
even when the test fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from octoprov.models import TaskStep
from octoprov.settings import Settings
from octoprov.targets.fake import events
from tests.support import ROOT, namespaces, netlab
from tests.support.relay import Relay, listen_in, rehost
from tests.support.servers import unavailable
from tests.support.stack import flush_redis, start_stack

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
PREFIX = "opm"  # namespaces opm<pid>h (the hub) and opm<pid><worker>; tests/support/netlab.py uses opv<pid>
HUB_ADDRESS = "198.51.100.1"
WORKERS = {"w1": ("198.51.100.11", "default"), "w2": ("198.51.100.12", "default"), "w3": ("198.51.100.13", "kvm")}
TASKS = 40


class Hosts(netlab.Lab):
    """A hub namespace with a bridge at 198.51.100.1/24 and one namespace per worker, joined to the bridge by a
    veth pair: the worker's only interface, with the only route, 198.51.100.0/24. Processes are started and
    stopped, and the namespaces deleted, by netlab's Lab."""

    def __init__(self, workdir: Path, workers: dict[str, tuple[str, str]]):
        super().__init__(workdir)
        tag = f"{PREFIX}{os.getpid()}"
        self.hub = tag + "h"
        self.hosts = {name: tag + name for name in workers}
        self.addresses = {name: address for name, (address, _) in workers.items()}

    def _create(self) -> None:
        remove_stale_namespaces()
        for namespace in (self.hub, *self.hosts.values()):
            namespaces.ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            namespaces.ip("-n", namespace, "link", "set", "lo", "up")
        hub = ("-n", self.hub)
        namespaces.ip(*hub, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        namespaces.ip(*hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        namespaces.ip(*hub, "link", "set", "br0", "up")
        for name, namespace in self.hosts.items():
            namespaces.ip(*hub, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", namespace)
            namespaces.ip(*hub, "link", "set", f"v{name}", "master", "br0", "up")
            namespaces.ip("-n", namespace, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            namespaces.ip("-n", namespace, "link", "set", "eth0", "up")


def remove_stale_namespaces() -> None:
    """Namespaces of this kind left by a pytest that was killed: the PID in their name is gone."""
    namespaces.remove_stale(PREFIX, r"\w*")


def unusable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip is not installed (iproute2)"
    return None


def on_hub(url: str) -> str:
    """The same server, as the workers address it: the hub's address, the same port."""
    return rehost(url, HUB_ADDRESS)


def steps_done_by(log: Path) -> list[tuple[int, str, str]]:
    """(task, step, worker) for every work step the worker's log says it ran."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [(int(task), step, worker) for task, step, worker in re.findall(r"task (\d+): (\w+) done by (\S+)", text)]


@pytest.mark.postgres
@pytest.mark.redis
def test_three_workers_on_three_hosts_complete_forty_tasks(tmp_path, postgres_server, redis_url):
    if reason := unusable_reason():
        unavailable(reason)
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url)
    relay = Relay()
    try:
        database, broker, api = (stack.env["OCTOPROV_DATABASE_URL"], stack.env["OCTOPROV_BROKER_URL"], stack.api.url)
        with Hosts(tmp_path, WORKERS) as hosts:
            for url in (database, broker, api):
                relay.forward(listen_in(hosts.hub, HUB_ADDRESS, urlsplit(url).port))
            for name, (_, queue) in WORKERS.items():
                routes = hosts.run(hosts.hosts[name], "ip", "-4", "route").stdout.split("\n")
                assert [r.split()[0] for r in routes if r] == ["198.51.100.0/24"], "no way out but the bridge"
                env = {**stack.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                       "OCTOPROV_DATABASE_URL": on_hub(database), "OCTOPROV_BROKER_URL": on_hub(broker),
                       "OCTOPROV_PUBLIC_URL": on_hub(api), "OCTOPROV_LOG_DIR": str(tmp_path / f"log-{name}")}
                hosts.start(hosts.hosts[name], [str(ENTRYPOINT), "worker", "--queues", queue, "--concurrency", "2",
                                                "--hostname", f"{name}@%h"], f"{name}.out", env=env, cwd=tmp_path)
            wait_for_workers(stack, set(WORKERS), hosts)

            node = stack.fake_node("MULTIHOST", machinePool="kvm")
            image = stack.image()
            started = time.monotonic()
            ids = [stack.task(node, image, hostname=f"MH-{n:02d}")["id"] for n in range(TASKS)]
            finished = [stack.wait_for(task_id, {"completed", "failed", "cancelled"}, timeout=300) for task_id in ids]
            elapsed = time.monotonic() - started
            unfinished = [(t["id"], t["status"], t["currentStep"]) for t in finished if t["status"] != "completed"]
            assert not unfinished

            work = [entry for name in WORKERS for entry in steps_done_by(tmp_path / f"log-{name}" / "worker.log")]
            callbacks = [e for e in events(stack.data_dir) if e["action"] == "callback"]
            peers = dict(relay.peers)
            work_steps = work_steps_of(stack, ids[0])
    finally:
        relay.close()
        stack.stop()

    by_worker = Counter(worker.split("@")[0] for _, _, worker in work)
    machines = Counter(event["worker"].split("@")[0] for event in callbacks)
    tasks_of = {name: len({task for task, _, worker in work if worker.startswith(name + "@")}) for name in WORKERS}
    summary = {"tasks": TASKS, "seconds": round(elapsed, 1), "work steps by worker": dict(by_worker),
               "tasks each default worker took part in": tasks_of,
               "machine callbacks by worker": dict(machines)}
    print(f"\nmulti-host rehearsal: {json.dumps(summary)}")
    (tmp_path / "summary.json").write_text(json.dumps(summary))

    assert by_worker["w1"] > 0 and by_worker["w2"] > 0, "both workers of the default pool ran steps"
    assert by_worker["w3"] == 0, "the kvm worker takes nothing from the default queue"
    assert set(machines) == {"w3"} and sum(machines.values()) >= 3 * TASKS, "the kvm worker played every machine"
    ran = Counter((task, step) for task, step, _ in work)
    assert set(ran) == {(task, step) for task in ids for step in work_steps}, "every work step, by a named worker"
    assert max(ran.values()) == 1, "no step ran twice"
    for name, (address, _) in WORKERS.items():
        # the kvm worker only plays machines, which know what they learnt at power-on and never read the database
        for url in (database, broker) if name != "w3" else (broker,):
            assert peers.get((address, urlsplit(url).port)), f"{name} reached {url} over the bridge"
    assert peers.get((WORKERS["w3"][0], urlsplit(api).port)), "the machines' callbacks crossed the bridge"


def work_steps_of(stack, task_id: int) -> set[str]:
    database = stack.database
    try:
        with database.session() as session:
            return set(session.scalars(select(TaskStep.name).where(TaskStep.task_id == task_id,
                                                                   TaskStep.kind == "work")))
    finally:
        database.dispose()


def wait_for_workers(stack, names: set[str], hosts: Hosts, timeout: float = 90) -> None:
    """Until every worker answers a ping through the broker (they connect over the bridge)."""
    from workers.app import make_celery

    app = make_celery(Settings(data_dir=stack.data_dir, broker_url=stack.env["OCTOPROV_BROKER_URL"]))
    deadline = time.monotonic() + timeout
    answered: set[str] = set()
    while time.monotonic() < deadline:
        for process in hosts.processes:
            assert process.poll() is None, f"{process.args} exited:\n" + "\n".join(
                hosts.log(f"{name}.out")[-3000:] for name in names)
        replies = app.control.ping(timeout=1.0) or []
        answered = {node.split("@")[0] for reply in replies for node in reply}
        if names <= answered:
            app.close()
            return
    app.close()
    raise AssertionError(f"workers {sorted(names - answered)} did not answer within {timeout} s")
