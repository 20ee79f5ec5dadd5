"""The multi-site rehearsal (issue 22): a central stack and two sites in network namespaces behind a router
whose links to the sites (the "WAN") hold every frame 20 ms each way; at each site one QEMU machine boots
from the network through the site's own edge (`octoprov pxe --site`) into the tiny Linux, whose callback to
the centre moves its bare-metal task on. Then a second machine at the first site boots with its WAN cut, from
what the edge cached, and the image is shown to have crossed each WAN once. The lab is
tests/support/multisite.py; the three tests share it (three QEMU boots in all) and run in this order.

Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support import multisite, netlab, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, steps, unusable
from tests.support.multisite import SITES, Rehearsal

SECOND_MAC = "52:54:00:6f:71:02"  # a second machine at the first site, booted with its WAN cut
EDGE_NOTICES_S = 30  # the edge's request to the centre times out after 10 s: then it knows the WAN is down


@pytest.fixture(scope="module")
def lab(tmp_path_factory, postgres_server, redis_url) -> Iterator[Rehearsal]:
    if reason := netlab.unusable_reason():
        unusable(reason, "multi-site rehearsal")
    started = time.monotonic()
    with multisite.rehearsal(tmp_path_factory.mktemp("multisite"), postgres_server, redis_url) as rehearsal:
        print(f"\nmulti-site lab up in {time.monotonic() - started:.1f} s")
        yield rehearsal


def installer_started(task: dict) -> bool:
    return steps(task)["installer_started"] == "done"


def powered_on(task: dict) -> bool:
    return task["status"] == "booting" and steps(task)["power_on"] == "done"


def wait_console(vm: netlab.Vm, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while text not in vm.console():
        if time.monotonic() > deadline or (vm.process.poll() is not None and text not in vm.console()):
            return False
        time.sleep(0.5)
    return True


def kernel_url(lab: Rehearsal, site: str) -> str:
    """Where the site's machines fetch the image's kernel: its edge."""
    kernel = next(path for path in lab.central.image_files if path.endswith("vmlinuz"))
    return f"{lab.sites[site].boot_url}/boot/images/{kernel}"


@pytest.mark.postgres
@pytest.mark.redis
def test_each_site_boots_its_machine_through_its_own_edge(lab: Rehearsal):
    for site in SITES:  # the WAN is between the site and the centre: a round trip takes the added 40 ms
        assert lab.wan_round_trip(site.name) >= 2 * multisite.WAN_DELAY_MS / 1000 * 0.9
    last = SITES[-1].name  # cutting a WAN cuts that site off the centre, and only until it is restored
    lab.topology.set_wan(last, up=False)
    try:
        assert not lab.wan_reachable(last) and lab.wan_reachable(SITES[0].name)
    finally:
        lab.topology.set_wan(last, up=True)
    assert lab.wan_reachable(last, attempts=10)
    tasks = {site.name: lab.provision(site.name, f"tiny-{site.name}", site.mac) for site in SITES}
    for site in SITES:
        lab.wait_task(tasks[site.name], powered_on, 90, "waiting for power_on")
    vms = {site.name: lab.boot(site.name, f"tiny-{site.name}", site.mac) for site in SITES}  # both at once
    try:
        elapsed = {}
        for site in SITES:
            task = lab.wait_task(tasks[site.name], installer_started, BOOT_TIMEOUT, f"booting at {site.name}")
            elapsed[site.name] = time.monotonic() - vms[site.name].started
            assert task["status"] == "installing", task
        for vm in vms.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                vm.process.wait(timeout=30)  # /init powers off after the callback
    finally:
        for vm in vms.values():
            vm.stop()
    print("\n" + ", ".join(f"{name}: callback {seconds:.1f} s after QEMU start" for name, seconds in elapsed.items()))
    for site in SITES:
        services, console = lab.sites[site.name], vms[site.name].console()
        assert f"{tinylinux.MARKER}: callback installer_started answered" in console, lab.diagnostics()
        assert f"octoprov.task={tasks[site.name]}" in console  # the kernel's command line: its own task's answer
        assert kernel_url(lab, site.name) in console  # the kernel from the site's own edge
        edge_log = services.edge_log()
        # the edge's ProxyDHCP answered this site's machine, with this site's boot URL, and never the other's
        assert re.search(rf"OFFER {site.mac} .*{re.escape(services.boot_url)}/", edge_log), edge_log[-3000:]
        assert all(other.mac not in edge_log for other in SITES if other is not site)


@pytest.mark.postgres
@pytest.mark.redis
def test_the_edge_boots_a_prepared_machine_with_the_wan_cut(lab: Rehearsal):
    """The machine's callback cannot reach the centre while the WAN is down, so its task does not move on:
    the boot is seen at the edge (its status, the machine's console) and, once the link is back, on the task's
    log, from the edge's report."""
    site = SITES[0]
    edge = lab.sites[site.name]
    task_id = lab.provision(site.name, "tiny-cut", SECOND_MAC)
    lab.wait_task(task_id, powered_on, 90, "waiting for power_on")
    edge.wait_status(lambda status: status["prepared"].get(SECOND_MAC) == {"taskId": task_id, "action": "install"},
                     30, "waiting for the prepared install answer")
    fetches = edge.status()["fetches"]
    lab.topology.set_wan(site.name, up=False)
    try:
        edge.wait_status(lambda status: not status["online"], EDGE_NOTICES_S, "waiting for it to miss the centre")
        vm = lab.boot(site.name, "tiny-cut", SECOND_MAC)
        try:
            assert wait_console(vm, f"{tinylinux.MARKER}: init started", BOOT_TIMEOUT), lab.diagnostics()
            console = vm.console()
            assert f"octoprov.task={task_id}" in console and kernel_url(lab, site.name) in console
        finally:
            vm.stop()
        status = edge.status()
        assert not status["online"] and status["unreported"] >= 1 and status["fetches"] == fetches, status
        assert not lab.wan_reachable(site.name)
    finally:
        lab.topology.set_wan(site.name, up=True)

    def reported(_: dict) -> bool:
        return any(entry.get("step") == "pxe" and f"by the edge of site {site.name}" in entry["message"]
                   and "while the centre was unreachable" in entry["message"] for entry in lab.task_logs(task_id))

    lab.wait_task(task_id, reported, 60, "waiting for the edge's report of the boot it served")
    edge.wait_status(lambda status: status["online"] and not status["unreported"], 30, "waiting for the centre")


@pytest.mark.postgres
@pytest.mark.redis
def test_the_image_crossed_the_wan_once_per_site(lab: Rehearsal):
    """After the boots above (two machines at the first site, one at the second), the central API sent each
    boot file whole once to each site's edge, and nothing to a machine."""
    if not lab.booted:
        pytest.skip("no machine booted: this test checks what the tests before it sent across the WAN")
    sent = lab.central.image_requests_by_client()
    expected = {(site.edge, path): [200] for site in SITES for path in lab.central.image_files}
    assert sent == expected, lab.central.access_log()[-3000:]
