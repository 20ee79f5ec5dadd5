"""Time from POST /tasks to the VM running, for 20 KVM tasks posted at once, on a real libvirtd
(the test lab's: its own namespace and bridge, QEMU emulating) behind the real stack (gunicorn API,
Redis, PostgreSQL, a worker with 4 slots).

Reference, measured in the same run: what it takes libvirt alone to do the same, 20 at once,
through virsh: create the volume, define the same domain XML (taken from a VM Octoprov created),
start it. The ratio says what Octoprov's own work adds (validation against the host, the database,
the queue, the steps before power-on).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench.common import percentile, ratio, sized
from tests.support import libvirtlab, netlab
from tests.support.servers import start_postgres, start_redis
from tests.support.stack import start_stack

TASKS = sized(20, 2)
SLOTS = 4


def _octoprov_starts(stack, node: int, image: int) -> tuple[list[float], str]:
    """Seconds from each task's creation to its power_on step finishing (the domain is running then)."""
    def post(index: int) -> dict:
        return stack.call("POST", "/tasks", 201, json={
            "hostname": f"bench-{index:02d}", "targetType": "kvm", "hypervisorNodeId": node,
            "os": {"imageId": image, "adminPassword": "Bench-Pa55word!"},
            "vm": {"cpu": 1, "memoryGb": 1, "generation": 1, "disks": [{"sizeGb": 2, "purpose": "os"}],
                   "network": {"vswitch": netlab.BRIDGE}}, "postInstall": {"installAgent": False}}).json()

    with ThreadPoolExecutor(TASKS) as pool:
        created = list(pool.map(post, range(TASKS)))
    samples = []
    for task in created:
        done = stack.wait_step(task["id"], "power_on", "done", timeout=600)
        finished = next(s for s in done["steps"] if s["name"] == "power_on")["finishedAt"]
        samples.append((datetime.fromisoformat(finished) - datetime.fromisoformat(task["createdAt"])).total_seconds())
    return samples, f"bench-{0:02d}"


def _virsh_starts(daemon: libvirtlab.Libvirtd, template_xml: str) -> list[float]:
    """The same domain, 20 at once, by hand: vol-create-as, define, start."""
    def one(index: int) -> float:
        name = f"ref-{index:02d}"
        xml = template_xml.replace("bench-00", name)
        xml = re.sub(r"\s*<uuid>[^<]*</uuid>", "", xml)
        xml = re.sub(r"\s*<mac address='[^']*'/>", "", xml)
        path = daemon.lab.workdir / f"{name}.xml"
        path.write_text(xml)
        began = time.perf_counter()
        daemon.virsh("vol-create-as", daemon.pool_name, f"{name}-os", "2G", "--format", "qcow2")
        daemon.virsh("define", str(path))
        daemon.virsh("start", name)
        return time.perf_counter() - began

    with ThreadPoolExecutor(TASKS) as pool:
        return list(pool.map(one, range(TASKS)))


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
            image = stack.image()
            node = stack.call("POST", "/hypervisors", 201, json={
                "name": "KVM-BENCH", "kind": "kvm", "endpoint": libvirtlab.URI,
                "kvm": {"storagePool": daemon.pool_name, "domainType": "qemu"}}).json()["id"]
            octoprov, first = _octoprov_starts(stack, node, image)
            template = daemon.virsh("dumpxml", first, "--inactive")
            for name in daemon.domains():  # the reference starts from the same empty host
                daemon.virsh("destroy", name, check=False)
            reference = _virsh_starts(daemon, template)
            running = sum(daemon.virsh("domstate", name).strip() == "running" for name in daemon.domains())
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()
    ref_p50, ref_p99 = statistics.median(reference), percentile(reference, 0.99)
    print(f"POST /tasks -> VM running, {TASKS} tasks at once ({SLOTS} worker slots; QEMU emulating, "
          f"{running} domains running at the end)")
    print(f"{'case':<36}{'p50 s':>9}{'p99 s':>9}{'p50 / ref':>11}{'p99 / ref':>11}")
    print(f"{'reference: virsh vol+define+start':<36}{ref_p50:>9.2f}{ref_p99:>9.2f}{1.0:>11.2f}{1.0:>11.2f}")
    p50, p99 = statistics.median(octoprov), percentile(octoprov, 0.99)
    print(f"{'octoprov: POST /tasks':<36}{p50:>9.2f}{p99:>9.2f}{p50 / ref_p50:>11.2f}{p99 / ref_p99:>11.2f}")
    ratio(f"kvm POST -> running p50, {TASKS} at once", p50, ref_p50, "s", goal="<= 1.2x")
    ratio(f"kvm POST -> running p99, {TASKS} at once", p99, ref_p99, "s", goal="<= 1.2x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
