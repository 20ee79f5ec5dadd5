"""Time from POST /tasks to the VM running, for 20 KVM tasks posted at once, on a real libvirtd
(the test lab's: its own namespace and bridge, QEMU emulating) behind the real stack (gunicorn API,
Redis, PostgreSQL, a running worker of the kvm pool with one slot per task of the burst).

The worker has as many slots as tasks are posted at once, as a site expecting such bursts would set
``OCTOPROV_WORKER_CONCURRENCY`` (the default, 2, suits a few tasks at a time): with fewer slots
the steps wait for one, and the last task's power-on comes after the others' in turn, while
the reference starts all 20 at once. The worker answers a ping before the tasks are posted: a
deployed worker is running already, so its start-up is no part of the measure; for the same reason
a first burst of 20 tasks warms it up (each slot's process loads the drivers and opens its database
connections on its first step), and the bursts after it are measured.

Reference, measured in the same run: what it takes libvirt alone to do the same, 20 at once,
through virsh: create the volume, define the same domain XML (taken from a VM Octoprov created),
start it. The two bursts take turns (Octoprov's, the reference's, and again), every domain stopped
before each, and the percentiles are of both rounds' samples: on a machine that other work slows
down for a while, neither side gets all of the quiet or all of the busy time. The ratio says what
Octoprov's own work adds (the database, the queue, the steps before power-on; the POST's validation
against the host comes before the task's creation time, where the measure starts).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.common import percentile, ratio, sized
from octoprov.settings import Settings
from tests.support import libvirtlab, netlab
from tests.support.servers import start_postgres, start_redis
from tests.support.stack import start_stack

TASKS = sized(20, 2)
ROUNDS = sized(2, 1)  # Octoprov's burst then the reference's, this many times; percentiles of all samples
SLOTS = TASKS  # one per task of the burst (see above)


STEPS = ("create_vm", "render_answers", "register_mac", "power_on")  # the work steps up to the running domain


def _seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _breakdown(task: dict) -> dict[str, float]:
    """Where one task's time went, from its step rows: for each step up to power_on, the wait before it
    (since the task's creation or the previous step's end: the API's work after storing the task and
    the queue) and its run. In brackets, not part of the sum: when the POST was answered."""
    rows = {s["name"]: s for s in task["steps"]}
    parts, before = {"(POST answered)": _seconds(task["answeredAt"], task["createdAt"])}, task["createdAt"]
    for name in STEPS:
        row = rows[name]
        parts[f"{name} wait"] = _seconds(row["startedAt"], before)
        parts[f"{name} run"] = _seconds(row["finishedAt"], row["startedAt"])
        before = row["finishedAt"]
    return parts


def _answered(task: dict) -> dict:
    """The created task, with the moment its POST was answered (the clock the API's is)."""
    return {**task, "answeredAt": datetime.now(UTC).isoformat()}


def _print_parts(title: str, parts: list[dict[str, float]]) -> None:
    print(f"{title:<36}{'p50 s':>9}{'p99 s':>9}")
    for key in parts[0]:
        values = [part[key] for part in parts]
        print(f"  {key:<34}{statistics.median(values):>9.2f}{percentile(values, 0.99):>9.2f}")


def _octoprov_starts(stack, node: int, image: int,
                     prefix: str = "bench") -> tuple[list[float], list[dict[str, float]], str]:
    """Seconds from each task's creation to its power_on step finishing (the domain is running then),
    and where each task's time went."""
    def post(index: int) -> dict:
        return _answered(stack.call("POST", "/tasks", 201, json={
            "hostname": f"{prefix}-{index:02d}", "targetType": "kvm", "hypervisorNodeId": node,
            "os": {"imageId": image, "adminPassword": "Bench-Pa55word!"},
            "vm": {"cpu": 1, "memoryGb": 1, "generation": 1, "disks": [{"sizeGb": 2, "purpose": "os"}],
                   "network": {"vswitch": netlab.BRIDGE}}, "postInstall": {"installAgent": False}}).json())

    with ThreadPoolExecutor(TASKS) as pool:
        created = list(pool.map(post, range(TASKS)))
    samples, parts = [], []
    for task in created:
        done = _powered_on(stack, task["id"])
        finished = next(s for s in done["steps"] if s["name"] == "power_on")["finishedAt"]
        samples.append(_seconds(finished, task["createdAt"]))
        parts.append(_breakdown({**done, "answeredAt": task["answeredAt"]}))
    return samples, parts, f"{prefix}-{0:02d}"


def _powered_on(stack, task_id: int, timeout: float = 600) -> dict:
    """The task once its power_on step is done. The times come from its step rows, so asking twice a
    second loses nothing, and leaves the processors to the work measured (the reference has no watcher)."""
    deadline = time.monotonic() + timeout
    while True:
        task = stack.get(task_id)
        if next(s for s in task["steps"] if s["name"] == "power_on")["status"] == "done":
            return task
        if task["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"task {task_id} is {task['status']} at {task['currentStep']}")
        time.sleep(0.5)


def _virsh_starts(daemon: libvirtlab.Libvirtd, template_xml: str, template_name: str,
                  prefix: str) -> tuple[list[float], list[dict[str, float]]]:
    """The same domain, 20 at once, by hand: vol-create-as, define, start (and each command's time)."""
    def one(index: int) -> tuple[float, dict[str, float]]:
        name = f"{prefix}-{index:02d}"
        xml = template_xml.replace(template_name, name)
        xml = re.sub(r"\s*<uuid>[^<]*</uuid>", "", xml)
        xml = re.sub(r"\s*<mac address='[^']*'/>", "", xml)
        path = daemon.lab.workdir / f"{name}.xml"
        path.write_text(xml)
        began = last = time.perf_counter()
        parts = {}
        for command in (("vol-create-as", daemon.pool_name, f"{name}-os", "2G", "--format", "qcow2"),
                        ("define", str(path)), ("start", name)):
            daemon.virsh(*command)
            now = time.perf_counter()
            parts[f"virsh {command[0]}"], last = now - last, now
        return last - began, parts

    with ThreadPoolExecutor(TASKS) as pool:
        results = list(pool.map(one, range(TASKS)))
    return [total for total, _ in results], [parts for _, parts in results]


def _destroy_all(daemon: libvirtlab.Libvirtd) -> None:
    """Every domain stopped: the next round starts on a host with no guest using its processors."""
    for name in daemon.domains():
        daemon.virsh("destroy", name, check=False)


def _wait_ready(env: dict) -> None:
    """Once the worker answers a ping, it consumes its queues."""
    from workers.app import make_celery

    make_celery(Settings.from_env(env)).send_task("octoprov.ping", queue="default").get(timeout=120)


def main() -> int:
    reason = netlab.unusable_reason() or libvirtlab.unusable_reason()
    if reason:
        print(f"kvm_start: skipped: {reason}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="octoprov-bench-kvm-"))
    postgres, redis = start_postgres(base / "pg"), start_redis(base / "redis")
    stack = start_stack(base / "stack", postgres, redis.url)
    try:
        with netlab.Lab(base / "lab") as lab, libvirtlab.Libvirtd(lab, f"bench{os.getpid()}") as daemon:
            stack.start_worker(concurrency=SLOTS, queues="default,kvm")
            _wait_ready(stack.env)
            image = stack.image()
            node = stack.call("POST", "/hypervisors", 201, json={
                "name": "KVM-BENCH", "kind": "kvm", "endpoint": libvirtlab.URI,
                "kvm": {"storagePool": daemon.pool_name, "domainType": "qemu"}}).json()["id"]
            _octoprov_starts(stack, node, image, "warm")  # every worker slot has run the steps once
            _destroy_all(daemon)
            octoprov, octoprov_parts, reference, reference_parts = [], [], [], []
            template = first = ""
            for round_ in range(ROUNDS):  # in turns: a machine busy with other work for a while slows both
                samples, parts, name = _octoprov_starts(stack, node, image, f"bench{round_}")
                octoprov, octoprov_parts = octoprov + samples, octoprov_parts + parts
                if not template:
                    template, first = daemon.virsh("dumpxml", name, "--inactive"), name
                _destroy_all(daemon)  # the reference starts from the same idle host
                samples, parts = _virsh_starts(daemon, template, first, f"ref{round_}")
                reference, reference_parts = reference + samples, reference_parts + parts
                if round_ + 1 < ROUNDS:
                    _destroy_all(daemon)
            running = sum(daemon.virsh("domstate", name).strip() == "running" for name in daemon.domains())
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()
    ref_p50, ref_p99 = statistics.median(reference), percentile(reference, 0.99)
    print(f"POST /tasks -> VM running, {TASKS} tasks at once ({SLOTS} worker slots; QEMU emulating; {ROUNDS} "
          f"rounds of each, in turns; {running} domains running at the end)")
    print(f"{'case':<36}{'p50 s':>9}{'p99 s':>9}{'p50 / ref':>11}{'p99 / ref':>11}")
    print(f"{'reference: virsh vol+define+start':<36}{ref_p50:>9.2f}{ref_p99:>9.2f}{1.0:>11.2f}{1.0:>11.2f}")
    p50, p99 = statistics.median(octoprov), percentile(octoprov, 0.99)
    print(f"{'octoprov: POST /tasks':<36}{p50:>9.2f}{p99:>9.2f}{p50 / ref_p50:>11.2f}{p99 / ref_p99:>11.2f}")
    print()
    _print_parts("where the time went: reference", reference_parts)
    _print_parts("where the time went: octoprov", octoprov_parts)
    ratio(f"kvm POST -> running p50, {TASKS} at once", p50, ref_p50, "s", goal="<= 1.2x")
    ratio(f"kvm POST -> running p99, {TASKS} at once", p99, ref_p99, "s", goal="<= 1.2x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
