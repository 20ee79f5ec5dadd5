"""A PXE storm: 1,000 machines with tasks ask /pxe/boot for their scripts, 100 at a time.

Measured with wrk against the real API server (gunicorn) on loopback; each request names
one of the 1,000 registered MACs. Reference, measured in the same run: the same server
answering its smallest route (a 404 for an unknown path) under the same load, so the ratio
is what the MAC lookup and script rendering cost on top of serving a request at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import update

from octoprov.models import TaskStep
from tests.support.live import start_live_api

MACHINES = 1000
CONNECTIONS = 100
SECONDS = 10

LUA = """
math.randomseed(42)
request = function()
  local n = math.random(0, LAST)
  return wrk.format("GET", string.format("/api/v1/provisioning/pxe/boot?mac=52-54-00-%02x-%02x-%02x",
    math.floor(n / 65536), math.floor(n / 256) % 256, n % 256))
end
""".replace("LAST", str(MACHINES - 1))


def _wrk(url: str, script: Path | None = None) -> tuple[float, float]:
    """Requests per second and p99 latency in ms."""
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def main() -> int:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package wrk; `make bench` installs it)")
    base = Path(tempfile.mkdtemp(prefix="octoprov-storm-"))
    live = start_live_api(base / "var", extra_env={"OCTOPROV_API_WORKERS": "2"})
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
        reference = _wrk(live.url + "/no-such-route")
        storm = _wrk(live.url, script)
    finally:
        live.stop()
    print(f"PXE storm: {MACHINES} registered MACs, {CONNECTIONS} concurrent clients, {SECONDS} s, gunicorn 2x8 threads")
    print(f"{'case':<34}{'req/s':>10}{'p99 ms':>10}{'req/s vs ref':>14}")
    print(f"{'reference: 404 of the same server':<34}{reference[0]:>10.0f}{reference[1]:>10.1f}{1.0:>14.2f}")
    print(f"{'/pxe/boot install scripts':<34}{storm[0]:>10.0f}{storm[1]:>10.1f}{storm[0] / reference[0]:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
