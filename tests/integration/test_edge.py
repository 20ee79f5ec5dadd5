"""A site's edge against a real central API: both real processes on 127.0.0.1, the edge without database access
(its database URL points nowhere), a real TFTP client."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time

import pytest
import requests
import tftpy
from sqlalchemy import create_engine, update

from octoprov.models import TaskStep
from tests.support.live import LiveApi, free_port, serve_again, start_live_api
from tests.support.processes import start_octoprov, stop_group

API = "/api/v1/provisioning"
MAC = "52:54:00:ed:9e:01"
KB = 1000


def _post(live: LiveApi, path: str, body: dict) -> dict:
    response = requests.post(live.url + API + path, json=body, headers=live.headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def _wait(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def stack(tmp_path):
    central = start_live_api(tmp_path / "central")
    images = central.data_dir / "images" / "tiny"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("vmlinuz", "initrd.gz", "root.img", "a.bin", "b.bin", "bad.bin"):
        (images / name).write_bytes(os.urandom(KB))
    image = _post(central, "/images", {"name": "Tiny", "osType": "linux", "imagePath": "tiny/root.img",
                                       "kernelPath": "tiny/vmlinuz", "initrdPath": "tiny/initrd.gz"})
    http_port, tftp_port = free_port(), free_port(socket.SOCK_DGRAM)
    site = _post(central, "/sites", {"name": "branch1", "bootUrl": f"http://127.0.0.1:{http_port}"})
    _post(central, "/machines", {"name": "b1-m1", "macAddresses": [MAC], "siteId": site["id"]})
    task = _post(central, "/tasks", {"hostname": "b1-01", "targetType": "baremetal", "macAddress": MAC,
                                     "os": {"imageId": image["id"]}})
    engine = create_engine(f"sqlite:///{central.data_dir / 'octoprov.sqlite'}")
    with engine.begin() as connection:  # its boot configuration is ready: the machine installs
        connection.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name.in_(
            ["register_machine", "render_answers", "register_mac", "power_on"])).values(status="done"))
    engine.dispose()
    token_file = tmp_path / "edge-token"
    token_file.write_text(central.token + "\n")
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(tmp_path / "edge"), "OCTOPROV_EDGE_POLL_S": "0.3",
           "OCTOPROV_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",  # never used: the edge has none
           "OCTOPROV_EDGE_CACHE_MAX_BYTES": str(3 * KB), "OCTOPROV_TFTP_HOST": "127.0.0.1",
           "OCTOPROV_TFTP_PORT": str(tftp_port), "OCTOPROV_IPXE_DIR": str(tmp_path / "no-ipxe")}
    edge = start_octoprov("pxe", "--site", "branch1", "--central", central.url, "--token-file", str(token_file),
                          "--http-host", "127.0.0.1", "--http-port", str(http_port), "--no-proxydhcp", env=env)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait(lambda: _status(url, edge).get("answers") == 1, "the edge has the prepared answer")
        yield central, edge, url, task, tftp_port, tmp_path
    finally:
        stop_group(edge)
        central.stop()


def _status(url: str, edge) -> dict:
    assert edge.poll() is None, "the edge exited"
    try:
        return requests.get(url + "/edge/status", timeout=2).json()
    except requests.ConnectionError:
        return {}


def test_the_edge_answers_and_serves_verified_cached_files(stack):
    central, edge, url, task, tftp_port, tmp_path = stack
    assert _status(url, edge)["prepared"] == {MAC: {"taskId": task["id"], "action": "install"}}  # no script, no token
    script = requests.get(url + API + "/pxe/boot", params={"mac": "52-54-00-ed-9e-01"}, timeout=10).text
    assert f"kernel {url}/boot/images/tiny/vmlinuz " in script  # boot files from the edge
    assert f"octoprov.callback={central.url}{API}/pxe/status" in script  # the callback to the centre
    document = requests.get(url + API + "/pxe/boot", params={"mac": MAC}, headers={"Accept": "application/json"},
                            timeout=10).json()
    assert document["action"] == "install" and document["taskId"] == task["id"]
    assert requests.get(url + API + "/pxe/boot", params={"mac": "nope"}, timeout=10).json()["errors"]["mac"]
    other = requests.get(url + API + "/pxe/boot", params={"mac": "52:54:00:00:00:99"}, timeout=10).text
    assert "kernel" not in other and "No prepared boot answer" in other
    assert f"{url}{API}/pxe/boot" in requests.get(url + API + "/pxe/chain.ipxe", params={"mac": MAC}, timeout=10).text

    kernel = (central.data_dir / "images" / "tiny" / "vmlinuz").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # concurrent first requests: one fetch
        bodies = list(pool.map(lambda _: requests.get(url + "/boot/images/tiny/vmlinuz", timeout=10).content,
                               range(6)))
    assert bodies == [kernel] * 6 and _status(url, edge)["fetches"] == 1
    ranged = requests.get(url + "/boot/images/tiny/vmlinuz", headers={"Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == kernel[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{KB}"
    assert requests.get(url + "/boot/images/tiny/vmlinuz", headers={"Range": "bytes=-5"}, timeout=10).content \
        == kernel[-5:]
    assert requests.get(url + "/boot/images/tiny/vmlinuz", headers={"Range": f"bytes={KB}-"},
                        timeout=10).status_code == 416
    assert _status(url, edge)["fetches"] == 1  # ranges from the cache
    assert requests.get(url + "/boot/images/../../etc/passwd", timeout=10).status_code == 404

    # a file that changed on the centre's disk after its digest was taken (bit rot keeps size and time)
    bad = central.data_dir / "images" / "tiny" / "bad.bin"
    assert requests.get(central.url + "/boot/images/tiny/bad.bin", headers={"Want-Digest": "sha-256"},
                        timeout=10).headers["Digest"].startswith("sha-256=")
    stamp = bad.stat()
    bad.write_bytes(os.urandom(KB))
    os.utime(bad, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert requests.get(url + "/boot/images/tiny/bad.bin", timeout=10).status_code == 502
    cached = tmp_path / "edge" / "edge" / "branch1" / "files" / "images" / "tiny"
    assert not (cached / "bad.bin").exists() and _status(url, edge)["fetches"] == 1

    # the cache holds 3 KB: a fourth file evicts the least recently used one (the initrd, not the kernel)
    for name in ("initrd.gz", "a.bin"):
        assert requests.get(url + f"/boot/images/tiny/{name}", timeout=10).status_code == 200
    requests.get(url + "/boot/images/tiny/vmlinuz", timeout=10)
    assert requests.get(url + "/boot/images/tiny/b.bin", timeout=10).status_code == 200
    assert sorted(path.name for path in cached.iterdir()) == ["a.bin", "b.bin", "vmlinuz"]
    assert _status(url, edge)["cacheBytes"] == 3 * KB

    client = tftpy.TftpClient("127.0.0.1", tftp_port)
    out = tmp_path / "grub.cfg"
    client.download(f"grub/octoprov/{MAC}.cfg", str(out))
    assert "exit" in out.read_text() or "linux" in out.read_text()


def test_with_the_centre_down_the_edge_answers_and_reports_later(stack):
    central, edge, url, task, _, _ = stack
    central.stop()
    _wait(lambda: _status(url, edge).get("online") is False, "the edge noticed the centre is away")
    script = requests.get(url + API + "/pxe/boot", params={"mac": MAC}, timeout=10).text
    assert f"octoprov.task={task['id']}" in script and "kernel " in script
    assert _status(url, edge)["unreported"] == 1
    serve_again(central)

    def reported() -> bool:
        logs = requests.get(f"{central.url}{API}/tasks/{task['id']}/logs", headers=central.headers, timeout=10)
        return any("by the edge of site branch1" in entry["message"] and "while the centre was unreachable"
                   in entry["message"] for entry in logs.json())

    _wait(reported, "the served boot on the task's log")
    assert _status(url, edge)["unreported"] == 0
