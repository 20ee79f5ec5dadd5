"""A multi-site rehearsal lab (issue 22): a central stack and two sites behind a router, all in network namespaces.

Four parts, each replaceable on its own:

1. **Topology** (``Topology``): a ``central`` namespace (198.51.100.1/26) and a ``router`` namespace
   (198.51.100.2 towards the centre), and per site one lab of tests/support/netlab.py (a site namespace with
   the bridge, the tap for QEMU and the site's DHCP server; a boot namespace for the site's boot services)
   in a /26 of its own. The router is every site's gateway; its link to each site is the site's "WAN": a
   delay line (``python -m tests.support.multisite wire``) that holds every frame ``WAN_DELAY_MS`` each way.
   That is what ``tc qdisc ... netem delay`` would do; it is done in user space because the kernels this
   runs on are built without sch_netem (and without modules). Cutting the WAN is ``ip link set ... down`` on
   the router's end. Nothing touches the host's interfaces; DHCP broadcasts stay on each site's bridge.
2. **Central stack** (``start_central``): the session's PostgreSQL and Redis (127.0.0.1 of the host, offered
   at 198.51.100.1 in the central namespace by tests/support/relay.py), the operator's API on the host's
   127.0.0.1 (where the test calls it), the central API inside the central namespace (what the sites reach
   across the WAN, its own access log) and a central worker.
3. **Per-site boot services** (``start_site_services``): the site registered at the centre with its edge's
   URL as ``bootUrl``; in the site's boot namespace its edge (``octoprov pxe --site``: no database, an operator
   token from a file, boot answers and files cached from the central API across the WAN) and its worker
   (``octoprov worker --site``).
4. **Machines** (``Rehearsal.provision``, ``Rehearsal.boot``): a bare-metal task per machine and a diskless
   BIOS QEMU VM (TCG) on the site's bridge, booted through QEMU's iPXE ROM (the fastest path, ~10-25 s),
   into the tiny Linux of tests/support/tinylinux.py, whose callback to the centre (through the site's
   router) moves the task on.

Everything is stopped by PID and every namespace deleted, even when a test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import ROOT, namespaces, netlab
from tests.support.bootservices import tiny_image
from tests.support.live import octoprov
from tests.support.processes import Managed, start_octoprov, stop_groups
from tests.support.relay import Relay, enter_namespace, listen_in, rehost
from tests.support.stack import Stack, start_stack

PREFIX = "opw"  # namespaces opw<pid>c, opw<pid>r, opw<pid><site>s, opw<pid><site>b; netlab uses opv, multihost opm
CENTRAL_ADDRESS = "198.51.100.1"
ROUTER_CENTRAL_ADDRESS = "198.51.100.2"
CENTRAL_PREFIX = 26
ALL_SITES = "198.51.100.0/24"  # every segment of the rehearsal; the only routes anyone gets
CENTRAL_API_PORT = 8080
EDGE_HTTP_PORT = 8081  # the edge's HTTP server (`octoprov pxe --site ... --http-port`)
EDGE_POLL_S = 0.5  # how often an edge asks for its answers and reports its boots (5 s in production)
EDGE_UNSET = ("OCTOPROV_DATABASE_URL", "OCTOPROV_BROKER_URL")  # an edge has neither: the central API only
WAN_DELAY_MS = 20  # one way, each direction: a round trip across the WAN takes 40 ms more
CENTRAL_LINK = "rc"  # the router's veth towards the centre; the central namespace's end is eth0
WAN_TAP = "wan"  # the site's end of its WAN, a port of the site's bridge


@dataclass(frozen=True)
class Site:
    """One site's plan: its /26 of 198.51.100.0/24, the router's address there (the gateway), the boot
    services' address (the edge), the bridge's (the site's DHCP server), its DHCP range and its machine."""

    name: str
    gateway: str
    edge: str
    bridge: str
    dhcp_range: str
    mac: str

    @property
    def router_tap(self) -> str:
        """The router's end of this site's WAN."""
        return f"w{self.name[-1]}"


SITES = (
    Site("branch1", "198.51.100.65", "198.51.100.66", "198.51.100.67", "198.51.100.80,198.51.100.120,10m",
         "52:54:00:6f:71:01"),
    Site("branch2", "198.51.100.129", "198.51.100.130", "198.51.100.131", "198.51.100.144,198.51.100.184,10m",
         "52:54:00:6f:72:01"),
)
SITE_PREFIX = 26


def remove_stale_namespaces() -> None:
    """Namespaces of this lab left by a pytest that was killed: the PID in their name is gone."""
    namespaces.remove_stale(PREFIX, r"[a-z]\w*")


# -- 1. topology --------------------------------------------------------------------------------------------


class Core(netlab.Lab):
    """The central and router namespaces, joined by a veth pair; IPv4 forwarding on in the router. Processes
    started here (the central API, the WAN delay lines) are stopped, and the namespaces deleted, by netlab's Lab."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, prefix=PREFIX)
        tag = f"{PREFIX}{os.getpid()}"
        self.central, self.router = tag + "c", tag + "r"

    def _create(self) -> None:
        remove_stale_namespaces()
        for namespace in (self.central, self.router):
            namespaces.ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            namespaces.ip("-n", namespace, "link", "set", "lo", "up")
        namespaces.ip("-n", self.router, "link", "add", CENTRAL_LINK, "type", "veth", "peer", "name", "eth0",
                      "netns", self.central)
        namespaces.ip("-n", self.router, "addr", "add", f"{ROUTER_CENTRAL_ADDRESS}/{CENTRAL_PREFIX}", "dev",
                      CENTRAL_LINK)
        namespaces.ip("-n", self.router, "link", "set", CENTRAL_LINK, "up")
        namespaces.ip("-n", self.central, "addr", "add", f"{CENTRAL_ADDRESS}/{CENTRAL_PREFIX}", "dev", "eth0")
        namespaces.ip("-n", self.central, "link", "set", "eth0", "up")
        namespaces.ip("-n", self.central, "route", "add", ALL_SITES, "via", ROUTER_CENTRAL_ADDRESS)
        self.run(self.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")


class Topology(Managed):
    """The centre, the router and one netlab lab per site, each site's bridge wired to the router through a
    WAN delay line; the site's boot namespace routes 198.51.100.0/24 through the router."""

    def __init__(self, workdir: Path, sites: tuple[Site, ...] = SITES, delay_ms: int = WAN_DELAY_MS):
        self.core = Core(workdir / "core")
        self.plans = {site.name: site for site in sites}
        self.sites: dict[str, netlab.Lab] = {}
        self.workdir, self.delay_ms = workdir, delay_ms
        self._stack = contextlib.ExitStack()

    def _create(self) -> None:
        for folder in (self.core.workdir, *(self.workdir / name for name in self.plans)):
            folder.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(self.core)
        for name, plan in self.plans.items():
            lab = netlab.Lab(self.workdir / name, prefix=PREFIX, name=name, site_address=plan.bridge,
                             boot_address=plan.edge, dhcp_range=plan.dhcp_range)
            lab.prefix_length = SITE_PREFIX
            self.sites[name] = self._stack.enter_context(lab)
            self._wire(plan, lab)
            namespaces.ip("-n", lab.boot, "route", "add", ALL_SITES, "via", plan.gateway)

    def _wire(self, plan: Site, lab: netlab.Lab) -> None:
        """The site's WAN: a delay line from the router (its tap, the site's gateway address) to a tap on
        the site's bridge. The taps live as long as the delay line holds them."""
        wire = self.core.start(self.core.router, [
            sys.executable, "-m", "tests.support.multisite", "wire", plan.router_tap, lab.site, WAN_TAP,
            str(self.delay_ms)], f"wire-{plan.name}.log", cwd=ROOT)
        deadline = time.monotonic() + 30
        while any(subprocess.run(["ip", "-n", namespace, "link", "show", "dev", tap], capture_output=True).returncode
                  for namespace, tap in ((self.core.router, plan.router_tap), (lab.site, WAN_TAP))):
            if wire.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the WAN of {plan.name} did not come up:\n{self.core.log(f'wire-{plan.name}.log')}")
            time.sleep(0.1)
        namespaces.ip("-n", self.core.router, "addr", "add", f"{plan.gateway}/{SITE_PREFIX}", "dev", plan.router_tap)
        namespaces.ip("-n", self.core.router, "link", "set", plan.router_tap, "up")
        namespaces.ip("-n", lab.site, "link", "set", WAN_TAP, "master", netlab.BRIDGE, "up")

    def set_wan(self, site: str, up: bool) -> None:
        """Cut (``up=False``) or restore a site's WAN, at the router's end."""
        namespaces.ip("-n", self.core.router, "link", "set", self.plans[site].router_tap, "up" if up else "down")

    def close(self) -> None:
        """The sites' processes are stopped together before the core's (the WAN stays up while a site's worker
        says goodbye to the broker), then every namespace goes."""
        stop_groups([process for lab in self.sites.values() for process in lab.processes], grace=10)
        self._stack.close()
        self.sites.clear()


# -- 2. central stack ---------------------------------------------------------------------------------------


@dataclass
class Central:
    """The central stack: the operator's API (``stack``, on the host), the central API in the central
    namespace (``url``, its own log folder) and the environment hosts across the WAN start with."""

    stack: Stack
    site_env: dict[str, str]
    url: str
    log_dir: Path
    image_id: int = 0
    image_files: dict[str, int] = field(default_factory=dict)  # path under /boot/images/: size in bytes

    def access_log(self) -> str:
        path = self.log_dir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def image_requests_by_client(self) -> dict[tuple[str, str], list[int]]:
        """The status codes of the central API's answers for the image's boot files, by client address and
        file: 200 is a whole copy, 206 a part. (Not the bytes: gunicorn logs 0 for a file it sent with
        sendfile.)"""
        sent: dict[tuple[str, str], list[int]] = {}
        for line in self.access_log().splitlines():
            match = re.match(r'(\S+) .*"GET /boot/images/(\S+) HTTP/[\d.]+" (\d+) ', line)
            if match and match[2] in self.image_files:
                sent.setdefault((match[1], match[2]), []).append(int(match[3]))
        return sent


def start_central(workdir: Path, topology: Topology, relay: Relay, postgres_server, redis_url: str) -> Central:
    """The stack of tests/support/stack.py with PostgreSQL and Redis offered in the central namespace, the
    central API there, a central worker for the ``default`` queue, and the tiny Linux registered as an image."""
    stack = start_stack(workdir, postgres_server, redis_url)
    core = topology.core
    try:
        database, broker = stack.env["OCTOPROV_DATABASE_URL"], stack.env["OCTOPROV_BROKER_URL"]
        for url in (database, broker):
            relay.forward(listen_in(core.central, CENTRAL_ADDRESS, int(urlsplit(url).port or 0)))
        url = f"http://{CENTRAL_ADDRESS}:{CENTRAL_API_PORT}"
        site_env = {**stack.env, "OCTOPROV_DATABASE_URL": rehost(database, CENTRAL_ADDRESS),
                    "OCTOPROV_BROKER_URL": rehost(broker, CENTRAL_ADDRESS), "OCTOPROV_PUBLIC_URL": url,
                    "OCTOPROV_API_WORKERS": "1"}
        central = Central(stack, site_env, url, workdir / "central-log")
        api = core.start(core.central, [sys.executable, "-m", "cli", "api", "--host", CENTRAL_ADDRESS, "--port",
                                        str(CENTRAL_API_PORT)], "central-api.out",
                         env={**site_env, "OCTOPROV_LOG_DIR": str(central.log_dir)})
        stack.workers.append(start_octoprov("worker", "--queues", "default", "--concurrency", "1",
                                            "--hostname", f"central-{os.getpid()}@%h", env=stack.env))
        wait_http(core, core.central, f"{url}/api/v1/swagger.json", api)
        image = tiny_image(stack.data_dir)
        central.image_id = stack.call("POST", "/images", 201, json=image).json()["id"]
        central.image_files = {path: (stack.data_dir / "images" / path).stat().st_size
                               for path in (image["kernelPath"], image["initrdPath"])}
        return central
    except BaseException:
        stack.stop()
        raise


def wait_http(lab: netlab.Lab, namespace: str, url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``url`` answers from ``namespace`` (curl there), or fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while lab.run(namespace, "curl", "-sf", "-o", "/dev/null", "--max-time", "2", url, check=False).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer from {namespace} (its server: exit status {process.poll()})")
        time.sleep(0.3)


# -- 3. per-site boot services ------------------------------------------------------------------------------


@dataclass
class SiteServices:
    """What serves one site's machines: its edge (``boot_url``, what ProxyDHCP hands out and the site's
    ``bootUrl`` at the centre), the site's ID at the centre and the log folder of its edge and worker."""

    site: Site
    lab: netlab.Lab
    boot_url: str
    log_dir: Path
    site_id: int

    def log(self, name: str) -> str:
        path = self.log_dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def edge_log(self) -> str:
        return self.log(f"pxe-{self.site.name}.log")

    def status(self) -> dict:
        """The edge's ``/edge/status``, asked from the site's bridge (where its machines are)."""
        answer = self.lab.run(self.lab.site, "curl", "-sf", "--max-time", "5", f"{self.boot_url}/edge/status")
        return json.loads(answer.stdout)

    def wait_status(self, done: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """Until the edge's status satisfies ``done``: what the edge holds, not a guess at how long it takes."""
        deadline = time.monotonic() + timeout
        while not done(status := self.status()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the edge of {self.site.name} after {timeout} s, {what}: {status}\n"
                                     f"{self.edge_log()[-3000:]}")
            time.sleep(0.2)
        return status


def start_site_services(central: Central, topology: Topology, site: Site) -> SiteServices:
    """The site's DHCP server (addresses only, the router as gateway), router advertisements, the site
    registered at the centre with its edge's URL as ``bootUrl``, and in the site's boot namespace its edge
    (`octoprov pxe --site`: ProxyDHCP, TFTP and HTTP from caches filled across the WAN, no database, an
    operator token from a file) and its worker (`octoprov worker --site`, which reaches the central database
    and broker across the WAN, as a branch's workers do)."""
    lab = topology.sites[site.name]
    lab.start_site_dhcp(router=site.gateway)
    lab.start_router_advertisements()
    log_dir = lab.workdir / "log"
    boot_url = f"http://{site.edge}:{EDGE_HTTP_PORT}"
    site_id = central.stack.call("POST", "/sites", 201, json={"name": site.name, "bootUrl": boot_url}).json()["id"]
    token_file = lab.workdir / "edge-token"
    token = octoprov("token", "create", f"edge-{site.name}", "--role", "operator", env=central.stack.env).stdout
    token_file.touch(mode=0o600)
    token_file.write_text(token.strip() + "\n")
    edge_env = {name: value for name, value in central.site_env.items() if name not in EDGE_UNSET}
    edge_env.update(OCTOPROV_LOG_DIR=str(log_dir), OCTOPROV_DATA_DIR=str(lab.workdir / "edge"),
                    OCTOPROV_EDGE_POLL_S=str(EDGE_POLL_S), OCTOPROV_BOOT_SERVER_ADDRESS=site.edge,
                    OCTOPROV_TFTP_HOST=site.edge, OCTOPROV_PROXYDHCP_INTERFACE=netlab.BOOT_VETH)
    edge = lab.start(lab.boot, [sys.executable, "-m", "cli", "pxe", "--site", site.name, "--central", central.url,
                                "--token-file", str(token_file), "--http-host", site.edge,
                                "--http-port", str(EDGE_HTTP_PORT)], "pxe.out", env=edge_env)
    lab.start(lab.boot, [sys.executable, "-m", "cli", "worker", "--site", site.name, "--concurrency", "1",
                         "--hostname", f"{site.name}-{os.getpid()}@%h"], "worker.out",
              env={**central.site_env, "OCTOPROV_LOG_DIR": str(log_dir)})
    lab.wait_listening(lab.boot, "t", {EDGE_HTTP_PORT}, timeout=60, process=edge)
    lab.wait_listening(lab.boot, "u", {67, 69, 4011}, timeout=60, process=edge)
    return SiteServices(site, lab, boot_url, log_dir, site_id)


# -- 4. machines --------------------------------------------------------------------------------------------


@dataclass
class Rehearsal:
    """The running lab as the tests use it."""

    topology: Topology
    central: Central
    sites: dict[str, SiteServices]
    booted: list[str] = field(default_factory=list)  # the machines started so far, in order

    def provision(self, site: str, hostname: str, mac: str) -> int:
        """A bare-metal task for ``mac`` at ``site``; its ID."""
        body: dict = {"hostname": hostname, "targetType": "baremetal", "macAddress": mac, "siteId":
                      self.sites[site].site_id, "os": {"imageId": self.central.image_id},
                      "postInstall": {"installAgent": False}}
        return self.central.stack.call("POST", "/tasks", 201, json=body).json()["id"]

    def wait_task(self, task_id: int, done: Callable[[dict], bool], timeout: float, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            task = self.central.stack.get(task_id)
            if done(task):
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} is {task['status']} at {task['currentStep']} after "
                                     f"{timeout} s {what}\n{self.diagnostics()}")
            time.sleep(0.5)

    def boot(self, site: str, name: str, mac: str) -> netlab.Vm:
        """A diskless BIOS VM on the site's bridge, booting from the network through QEMU's iPXE ROM."""
        self.booted.append(name)
        return self.sites[site].lab.boot_vm(name, mac, "bios")

    def task_logs(self, task_id: int) -> list[dict]:
        return self.central.stack.call("GET", f"/tasks/{task_id}/logs", 200).json()

    def wan_round_trip(self, site: str) -> float:
        """Seconds to open a TCP connection from the site's boot namespace to the central API."""
        lab = self.sites[site].lab
        out = lab.run(lab.boot, "curl", "-s", "-o", "/dev/null", "--max-time", "5", "-w", "%{time_connect}",
                      f"{self.central.url}/api/v1/swagger.json").stdout
        return float(out)

    def wan_reachable(self, site: str, attempts: int = 1) -> bool:
        """Whether the central API answers from the site's boot namespace (within 2 s, ``attempts`` tries)."""
        lab = self.sites[site].lab
        for _ in range(attempts):
            if not lab.run(lab.boot, "curl", "-sf", "-o", "/dev/null", "--max-time", "2",
                           f"{self.central.url}/api/v1/swagger.json", check=False).returncode:
                return True
        return False

    def diagnostics(self) -> str:
        parts = [("central access.log", self.central.access_log())]
        for name, services in self.sites.items():
            lab = services.lab
            parts += [(f"{name} dnsmasq", lab.log("dnsmasq.log")), (f"{name} edge", services.edge_log()),
                      (f"{name} pxe.out", lab.log("pxe.out")), (f"{name} worker.log", services.log("worker.log"))]
            parts += [(f"{name} {serial.name}", serial.read_text(errors="replace"))
                      for serial in sorted(lab.workdir.glob("*.serial.log"))]
        return "\n".join(f"--- {title} (end) ---\n{text[-2500:]}" for title, text in parts)


@contextlib.contextmanager
def rehearsal(workdir: Path, postgres_server, redis_url: str) -> Iterator[Rehearsal]:
    """The whole lab, undone on exit: topology, relay, central stack, each site's services."""
    relay = Relay()
    central: Central | None = None
    try:
        with Topology(workdir) as topology:
            central = start_central(workdir, topology, relay, postgres_server, redis_url)
            sites = {site.name: start_site_services(central, topology, site) for site in SITES}
            yield Rehearsal(topology, central, sites)
    finally:
        if central is not None:
            central.stack.stop()
        relay.close()


# -- the WAN's delay line -----------------------------------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    """A tap device ``name`` in the calling thread's network namespace (it goes when the descriptor closes)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def delay_line(near: str, far_namespace: str, far: str, delay_s: float) -> None:
    """Join tap ``near`` (this namespace) and tap ``far`` (in ``far_namespace``): every frame is passed on
    ``delay_s`` after it arrived, in order; a frame for a side that is down is dropped, as on a cut cable."""
    a = open_tap(near)
    enter_namespace(far_namespace)
    b = open_tap(far)
    print(f"wire {near} <-> {far_namespace}/{far}, {delay_s * 1000:.0f} ms each way", flush=True)
    pending: dict[int, deque[tuple[float, bytes]]] = {a: deque(), b: deque()}
    other = {a: b, b: a}
    while True:
        now = time.monotonic()
        for fd, frames in pending.items():
            while frames and frames[0][0] <= now:
                with contextlib.suppress(OSError):  # EIO: that side is down; EAGAIN: its queue is full
                    os.write(fd, frames.popleft()[1])
        due = [frames[0][0] for frames in pending.values() if frames]
        readable, _, _ = select.select([a, b], [], [], max(0.0, min(due) - now) if due else 1.0)
        for fd in readable:
            for _ in range(256):
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:  # the device is down
                    time.sleep(0.01)
                    break
                pending[other[fd]].append((time.monotonic() + delay_s, frame))


if __name__ == "__main__":
    if sys.argv[1:2] == ["wire"] and len(sys.argv) == 6:
        delay_line(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) / 1000)
    else:
        sys.exit("usage: python -m tests.support.multisite wire NEAR_TAP FAR_NAMESPACE FAR_TAP DELAY_MS")
