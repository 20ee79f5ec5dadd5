"""The container lab: Octoprov's image and compose.yaml run for real, with podman as the engine, inside the
test's own network namespaces (tests/support/netlab.py: the stack in the *boot* namespace, clients such as a
machine's DHCP or an operator's curl in the *site* namespace). Nothing reaches or changes the machine's own
network: podman's bridges, NAT rules and published ports all live inside the boot namespace.

What this engine needs, each learnt on this machine (podman 4.3 from Debian 12, as root):
- a configuration of its own (``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``), never /etc/containers: runc (crun
  refuses the machine's hybrid cgroup layout), cgroupfs (no systemd), file events, ulimits within the machine's
  hard limits, and the storage under ``.cache/containers`` so that a second run starts warm;
- ``nsenter --net``, not ``ip netns exec``: the latter remounts /sys, which hides the cgroup mounts runc needs;
- no registry: the base image is made with mmdebstrap (Debian 12 minbase with Python) and imported; builds reach
  Debian's and PyPI's servers only through :mod:`tests.support.egress_proxy`, with the machine's CA bundle
  mounted for pip (the machine's egress inspects TLS);
- health checks run only when driven (``podman healthcheck run``: no systemd timers here), which
  :meth:`Engine.drive_health_checks` does while compose waits for ``service_healthy``;
- docker-compose 1.29 against ``podman system service``: no top-level ``name:``, shell-form health checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import ROOT, netlab
from tests.support.egress_proxy import EgressProxy

CACHE = ROOT / ".cache" / "containers"
STANDINS = Path(__file__).parent / "images"
OVERRIDE = STANDINS / "compose.test.yaml"
BASE_IMAGE = "localhost/octoprov-base:bookworm"
IMAGE = "localhost/octoprov:local"
# What the base image holds: the Dockerfile's build and runtime stages start from it (PYTHON_IMAGE).
BASE_PACKAGES = ["python3", "python3-venv", "python3-dev", "python-is-python3", "ca-certificates", "netbase", "tzdata"]
DEBIAN_SOURCES = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# The only hosts a build may reach (apt, pip).
REGISTRIES = {"deb.debian.org", "pypi.org", "files.pythonhosted.org"}
MACHINE_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Fixed, since podman records them in its database beside the cached storage and refuses another.
RUN_DIR = Path("/run/octoprov-test-containers")
PROGRAMS = ("podman", "runc", "conmon", "catatonit", "netavark", "iptables", "mmdebstrap", "docker-compose", "nsenter",
            "smbclient", "ip", "ss")


def unusable_reason() -> str | None:
    """Why the container lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "podman as root and network namespaces need root"
    for program in PROGRAMS:
        helpers = (Path(folder, program).exists() for folder in ("/usr/lib/podman", "/usr/libexec/podman"))
        if shutil.which(program) is None and not any(helpers):
            return f"{program} is not installed (make system-packages)"
    return netlab.namespaces.unusable(netlab.PREFIX)


def _hard_limit(flag: str, ceiling: int) -> int:
    """The machine's hard limit (``ulimit FLAG``), at most ``ceiling``: podman's defaults are higher than this
    machine allows, and runc then fails to set them ("error setting rlimit")."""
    text = subprocess.run(["bash", "-c", f"ulimit {flag}"], capture_output=True, text=True).stdout.strip()
    return ceiling if text == "unlimited" else min(int(text or 1024), ceiling)


def _write_configuration() -> dict[str, str]:
    """The engine's own configuration files; the environment that makes podman read them."""
    conf = CACHE / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    # podman lowers its own process limit to the kernel's pid_max, and a container cannot have more than it
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nofile, nproc = _hard_limit("-Hn", 65536), _hard_limit("-Hu", pid_max)
    (conf / "containers.conf").write_text(f"""\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{RUN_DIR / 'libpod'}"
[network]
network_backend = "netavark"
network_config_dir = "{CACHE / 'networks'}"
default_subnet = "198.51.100.224/27"
default_subnet_pools = [{{"base" = "198.51.100.192/27", "size" = 27}}]
""")
    (conf / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{CACHE / 'storage'}"
runroot = "{RUN_DIR / 'storage'}"
""")
    return {"CONTAINERS_CONF": str(conf / "containers.conf"), "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf")}


class Engine:
    """podman with the lab's configuration, run inside the boot namespace; its Docker-compatible API for compose."""

    def __init__(self, lab: netlab.Lab):
        self.lab = lab
        self.env = {**os.environ, **_write_configuration()}
        # compose reads its ${VARIABLES} from the environment before .env: none of the tests' own may leak in
        for name in list(self.env):
            if name.lower() in ("http_proxy", "https_proxy", "no_proxy", "docker_host", "container_host") or \
                    name.startswith(("OCTOPROV_", "POSTGRES_", "REDIS_", "FLOWER_", "COMPOSE_")):
                del self.env[name]
        self.socket = lab.workdir / "podman.sock"
        self.service: subprocess.Popen | None = None
        self.proxy: EgressProxy | None = None
        self.health_log: list[str] = []
        self.health_runs: list[float] = []  # how long each health check took, in seconds
        self._driving = threading.Event()

    # -- the engine --------------------------------------------------------------------------------

    def _in_boot(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.lab.boot}"]

    def podman(self, *args: str, check: bool = True, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self._in_boot(), "podman", *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def start(self) -> None:
        """The API service and the egress proxy; whatever an earlier, killed run left is removed first."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.remove_everything()
        self.proxy = EgressProxy(self.lab.boot, REGISTRIES).__enter__()
        log = open(self.lab.workdir / "podman-service.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.service = subprocess.Popen(
                [*self._in_boot(), "podman", "system", "service", "--time=0", f"unix://{self.socket}"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.lab.processes.append(self.service)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("podman system service did not start:\n" + self.lab.log("podman-service.log"))
            time.sleep(0.2)

    def stop(self) -> None:
        self._driving.clear()
        with contextlib.suppress(Exception):
            self.remove_everything()
        if self.proxy is not None:
            self.proxy.__exit__(None, None, None)
            self.proxy = None

    def remove_everything(self) -> None:
        """Containers, pods, volumes and networks (the images stay: they are the cache)."""
        self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        self.podman("pod", "rm", "--all", "--force", check=False)
        self.podman("volume", "prune", "--force", check=False)
        self.podman("network", "prune", "--force", check=False)

    # -- images ------------------------------------------------------------------------------------

    def image_exists(self, name: str) -> bool:
        return self.podman("image", "exists", name, check=False).returncode == 0

    def ensure_base_image(self) -> float:
        """The base image, from a cached mmdebstrap tarball (made again when its recipe changes); seconds spent."""
        started = time.monotonic()
        recipe = hashlib.sha256(json.dumps([BASE_PACKAGES, DEBIAN_SOURCES]).encode()).hexdigest()[:12]
        tarball = CACHE / f"base-bookworm-{recipe}.tar"
        if not tarball.exists():
            for stale in CACHE.glob("base-bookworm-*.tar"):
                stale.unlink()
            partial = tarball.with_suffix(".partial")
            subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                            "--format=tar", "bookworm", str(partial), *DEBIAN_SOURCES],
                           check=True, capture_output=True, timeout=600)
            partial.rename(tarball)
        label = f"octoprov.test.base={recipe}"
        current = self.podman("image", "inspect", "--format", "{{index .Labels \"octoprov.test.base\"}}",
                              BASE_IMAGE, check=False).stdout.strip()
        if current != recipe:
            self.podman("import", "--change", f"LABEL {label}", "--change", 'CMD ["/bin/bash"]',
                        str(tarball), BASE_IMAGE, timeout=300)
        return time.monotonic() - started

    def build_argv(self, context: Path, tag: str, containerfile: str | None = None, **build_args: str) -> list[str]:
        """``podman build`` on the boot namespace's network, through the egress proxy, trusting the machine's CA."""
        assert self.proxy is not None
        argv = [*self._in_boot(), "podman", "build", "--quiet", "--format", "docker", "--network", "host",
                "--tag", tag, "--volume", f"{MACHINE_CA}:/run/build-ca.crt:ro",
                "--build-arg", f"http_proxy={self.proxy.url}", "--build-arg", f"https_proxy={self.proxy.url}"]
        if containerfile:
            argv += ["--file", containerfile]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        return [*argv, str(context)]

    def build(self, context: Path, tag: str, containerfile: str | None = None, **build_args: str) -> float:
        """The image built (:meth:`build_argv`); seconds spent."""
        started = time.monotonic()
        result = subprocess.run(self.build_argv(context, tag, containerfile, **build_args), env=self.env,
                                capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"building {tag} failed:\n{result.stderr[-4000:]}")
        return time.monotonic() - started

    def build_standins(self) -> None:
        for name in ("postgres", "redis", "nginx"):
            self.build(STANDINS / name, f"localhost/octoprov-standin/{name}:latest", BASE=BASE_IMAGE)

    # -- compose -----------------------------------------------------------------------------------

    def compose(self, project: Path, *args: str, timeout: float = 600, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """docker-compose in ``project`` with compose.yaml and the test's override, against this engine."""
        env = {**self.env, "DOCKER_HOST": f"unix://{self.socket}", "COMPOSE_INTERACTIVE_NO_CLI": "1"}
        argv = ["docker-compose", "--ansi", "never", "-f", "compose.yaml", "-f", str(OVERRIDE), *args]
        result = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return result

    def containers(self, project: str) -> list[dict]:
        """The project's containers as ``podman ps --all`` reports them."""
        listing = self.podman("ps", "--all", "--format", "json", "--filter",
                              f"label=com.docker.compose.project={project}").stdout
        return list(json.loads(listing or "[]"))

    def health_intervals(self, idents: list[str], default: float) -> dict[str, float]:
        """Each container's own health-check ``interval`` in seconds (compose.yaml's), ``default`` where it
        has none, by short container ID."""
        if not idents:
            return {}
        listing = self.podman("container", "inspect", *idents, check=False, timeout=60).stdout
        intervals = {}
        for container in json.loads(listing or "[]"):
            nanoseconds = ((container.get("Config") or {}).get("Healthcheck") or {}).get("Interval") or 0
            intervals[container["Id"][:12]] = nanoseconds / 1e9 if nanoseconds > 0 else default
        return intervals

    @contextlib.contextmanager
    def drive_health_checks(self, starting_every: float = 2.0, healthy_every: float = 15.0) -> Iterator[None]:
        """Run the containers' health checks (nothing else runs them here) as an engine with a start interval
        does: while a container is starting or unhealthy, ``starting_every`` seconds after its last check, or
        twice as long as that check took if longer, so that compose's ``service_healthy`` and the tests learn
        of it promptly; once it is healthy, at its own ``interval`` (``healthy_every`` without one). Most
        checks start Python in the container, and a check that fails while its service starts takes seconds:
        run back to back, a dozen of them took most of the CPU the starting services needed. Each container
        has its own schedule, so a slow check (a worker still starting) does not hold back another's (the
        api, which compose waits for)."""
        self._driving.set()
        ended: dict[str, float] = {}  # container ID -> when its last check ended
        took: dict[str, float] = {}  # container ID -> how long its last check took
        intervals: dict[str, float] = {}
        running: set[str] = set()
        lock = threading.Lock()

        def check(ident: str, name: str) -> None:
            started = time.monotonic()
            try:
                result = self.podman("healthcheck", "run", ident, check=False, timeout=60)
                if result.returncode != 0:
                    self.health_log.append(f"{name}: {(result.stdout + result.stderr).strip()[-300:]}")
            except subprocess.TimeoutExpired:
                self.health_log.append(f"{name}: podman healthcheck run hung")
            finally:
                with lock:
                    ended[ident] = time.monotonic()
                    took[ident] = ended[ident] - started
                    self.health_runs.append(took[ident])
                    running.discard(ident)

        def due(ident: str, status: str, now: float) -> bool:
            if "(healthy)" in status:
                every = intervals.get(ident, healthy_every)
            else:
                every = max(starting_every, 2 * took.get(ident, 0.0))
            return ident not in running and now - ended.get(ident, -every) >= every

        def loop() -> None:
            with ThreadPoolExecutor(max_workers=4) as pool:
                while self._driving.is_set():
                    try:
                        listing = self.podman("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}", check=False,
                                              timeout=60).stdout.splitlines()
                        # "Up 3 seconds" has no health check; "Up 3 seconds (starting)" has one
                        checked = [line.split(maxsplit=2) for line in listing if "(" in line]
                        intervals.update(self.health_intervals(
                            [ident for ident, *_ in checked if ident not in intervals], healthy_every))
                    except subprocess.TimeoutExpired:
                        checked = []
                    with lock:
                        now = time.monotonic()
                        for ident, name, status in checked:
                            if due(ident, status, now):
                                running.add(ident)
                                pool.submit(check, ident, name)
                    time.sleep(1.0)

        thread = threading.Thread(target=loop, name="health-checks", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._driving.clear()
            thread.join(timeout=120)
