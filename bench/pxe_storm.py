"""A PXE storm: 1,000 machines with tasks ask /pxe/boot for their scripts, 100 at a time.

Measured with wrk against the real API server (gunicorn) on loopback; each request names
one of the 1,000 registered MACs. Reference, measured in the same run under the same load:
bare Flask under gunicorn with the same processes and threads, answering each MAC with a
320-byte script from a dict (bench/reference_boot_app.py), so the ratio is what Octoprov's
lookup and rendering cost on top of serving a boot script at all. Also printed: the API's
CPU time per request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import update

from bench.common import group_cpu_s, ratio, sized
from octoprov.models import TaskStep
from tests.support.live import free_port, start_live_api
from tests.support.processes import stop_group

MACHINES = sized(1000, 20)
CONNECTIONS = sized(100, 10)
SECONDS = sized(10, 1)
API_WORKERS, API_THREADS = 2, 8

LUA = """
math.randomseed(42)
request = function()
  local n = math.random(0, LAST)
  return wrk.format("GET", string.format("/api/v1/provisioning/pxe/boot?mac=52-54-00-%02x-%02x-%02x",
    math.floor(n / 65536), math.floor(n / 256) % 256, n % 256))
end
""".replace("LAST", str(MACHINES - 1))


def _wrk(url: str, script: Path) -> tuple[float, float, int]:
    """Requests per second, p99 latency in ms and the number of requests."""
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    count = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], count


def _reference(script: Path) -> tuple[float, float, int]:
    """The storm against bare Flask + gunicorn serving the scripts from a dict."""
    port = free_port()
    env = {**os.environ, "REFERENCE_MACHINES": str(MACHINES)}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class",
                               "gthread", "--workers", str(API_WORKERS), "--threads", str(API_THREADS),
                               "bench.reference_boot_app:app"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/provisioning/pxe/boot", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the reference server did not start") from None
                time.sleep(0.2)
        return _wrk(f"http://127.0.0.1:{port}", script)
    finally:
        stop_group(server)


def main() -> int:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package wrk; `make bench` installs it)")
    base = Path(tempfile.mkdtemp(prefix="octoprov-storm-"))
    live = start_live_api(base / "var", extra_env={"OCTOPROV_API_WORKERS": str(API_WORKERS),
                                                   "OCTOPROV_API_THREADS": str(API_THREADS)})
    try:
        import requests

        api = live.url + "/api/v1/provisioning"
        tiny = live.data_dir / "images" / "tiny"
        tiny.mkdir(parents=True)
        for name in ("vmlinuz", "initrd.gz"):
            (tiny / name).write_bytes(b"x")
        image = requests.post(api + "/images", headers=live.headers, timeout=30, json={
            "name": "Tiny", "osType": "linux", "imagePath": "tiny/vmlinuz", "kernelPath": "tiny/vmlinuz",
            "initrdPath": "tiny/initrd.gz", "kernelArgs": "console=ttyS0"}).json()["id"]
        for n in range(MACHINES):
            mac = f"52:54:00:{n >> 16:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
            response = requests.post(api + "/tasks", headers=live.headers, timeout=30, json={
                "hostname": f"storm-{n:04d}", "targetType": "baremetal", "macAddress": mac, "os": {"imageId": image}})
            response.raise_for_status()
        from octoprov.db import Database

        database = Database(live.env.get("OCTOPROV_DATABASE_URL") or f"sqlite:///{live.data_dir / 'octoprov.sqlite'}")
        with database.session() as session:  # every machine is at "boot config ready": /pxe/boot renders installs
            session.execute(update(TaskStep).where(TaskStep.name.in_(
                ("register_machine", "render_answers", "register_mac", "power_on"))).values(status="done"))
        script = base / "storm.lua"
        script.write_text(LUA)
        reference = _reference(script)  # meanwhile the API renders the answers ahead, as between a task's
        # boot configuration and its machine's first request (power-on, firmware, DHCP: several seconds)
        assert live.process is not None
        cpu_before = group_cpu_s([live.process.pid])
        storm = _wrk(live.url, script)
        cpu_per_request_ms = (group_cpu_s([live.process.pid]) - cpu_before) / max(1, storm[2]) * 1000
    finally:
        live.stop()
    print(f"PXE storm: {MACHINES} registered MACs, {CONNECTIONS} concurrent clients, {SECONDS} s, gunicorn "
          f"{API_WORKERS}x{API_THREADS} threads; the API spent {cpu_per_request_ms:.2f} ms CPU per request")
    print(f"{'case':<40}{'req/s':>10}{'p99 ms':>10}")
    print(f"{'reference: bare Flask, scripts in a dict':<40}{reference[0]:>10.0f}{reference[1]:>10.1f}")
    print(f"{'octoprov /pxe/boot install scripts':<40}{storm[0]:>10.0f}{storm[1]:>10.1f}")
    ratio("pxe boot storm requests/s", storm[0], reference[0], "req/s", goal=">= 1.0x")
    ratio("pxe boot storm p99", storm[1], reference[1], "ms", goal="p99 < 20 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
