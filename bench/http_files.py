"""Boot files over HTTP: a 1 GiB image, whole and as parallel Range requests, from Octoprov's
API server and from nginx (sendfile on) serving the same folder on loopback.

nginx is the reference, measured in the same run on the same file: the ratio says how close
the API server comes to a dedicated file server (the deployment can put nginx in front).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ratio, sized
from tests.support.live import free_port, start_live_api

SIZE = sized(1 << 30, 16 << 20)
PARTS = 8
ROUNDS = sized(5, 1)  # one download takes a fraction of a second: a single one is at the mercy of the scheduler

NGINX_CONF = """
user root;
worker_processes 2;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location /boot/images/ {{ alias {images}/; autoindex off; }}
  }}
}}
"""


def _curl(url: str, byte_range: str | None = None) -> int:
    command = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", url]
    if byte_range:
        command[1:1] = ["-r", byte_range]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def _measure(url: str) -> tuple[float, float]:
    """MiB/s for one whole download and for PARTS parallel Range requests covering the file."""
    began = time.perf_counter()
    assert _curl(url) == SIZE
    whole = SIZE / (time.perf_counter() - began) / 2**20
    step = SIZE // PARTS
    ranges = [f"{i * step}-{(i + 1) * step - 1}" for i in range(PARTS)]
    began = time.perf_counter()
    with ThreadPoolExecutor(PARTS) as pool:
        sizes = list(pool.map(lambda r: _curl(url, r), ranges))
    assert sum(sizes) == SIZE
    return whole, SIZE / (time.perf_counter() - began) / 2**20


def main() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed (Debian package nginx-light; `make bench` installs it)")
    base = Path(tempfile.mkdtemp(prefix="octoprov-http-"))
    live = start_live_api(base / "var")
    images = live.data_dir / "images"
    with open(images / "big.wim", "wb") as handle:
        handle.truncate(SIZE)
    prefix = base / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, port=port, images=images))
    server = subprocess.Popen([nginx, "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        _curl(f"http://127.0.0.1:{port}/boot/images/big.wim")  # the whole file into the page cache first
        _curl(f"{live.url}/boot/images/big.wim", "0-0")  # and the API's workers up
        nginx_url, our_url = f"http://127.0.0.1:{port}/boot/images/big.wim", f"{live.url}/boot/images/big.wim"
        rounds = [(_measure(nginx_url), _measure(our_url))
                  for _ in range(ROUNDS)]  # in turns, so a busy moment of the machine falls on both
        reference = (statistics.median(r[0][0] for r in rounds), statistics.median(r[0][1] for r in rounds))
        ours = (statistics.median(r[1][0] for r in rounds), statistics.median(r[1][1] for r in rounds))
    finally:
        server.terminate()
        server.wait(timeout=30)
        live.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"Boot files over HTTP: a {SIZE >> 20} MiB file on loopback, whole and as {PARTS} parallel Range requests, "
          f"median of {ROUNDS} rounds")
    print(f"{'server':<22}{'whole MiB/s':>13}{'ranges MiB/s':>14}{'whole/ref':>11}{'ranges/ref':>12}")
    print(f"{'reference: nginx':<22}{reference[0]:>13.0f}{reference[1]:>14.0f}{1.0:>11.2f}{1.0:>12.2f}")
    print(f"{'octoprov (gunicorn)':<22}{ours[0]:>13.0f}{ours[1]:>14.0f}{ours[0] / reference[0]:>11.2f}"
          f"{ours[1] / reference[1]:>12.2f}")
    ratio(f"http boot file, {SIZE >> 20} MiB whole", ours[0], reference[0], "MiB/s", goal=">= 0.9x")
    ratio(f"http boot file, {PARTS} Range requests", ours[1], reference[1], "MiB/s", goal=">= 0.9x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
