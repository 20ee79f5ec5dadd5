"""50 simultaneous downloads of ipxe.efi from Octoprov's TftpServer and from tftpd-hpa.

Same client for both: 50 curl processes started together, each negotiating blksize and tsize as
PXE ROMs and iPXE do. Wall time runs from the first start to the last exit; every download is
compared byte for byte. The reference is tftpd-hpa (``in.tftpd --foreground --secure``, one forked
process per transfer), started here as a child process on its own port and stopped by PID.
Run: ``.venv/bin/python -m bench.tftp_bench``.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ratio, sized
from octoprov.netboot.tftp import TftpServer

HOST = "127.0.0.1"
CLIENTS = sized(50, 4)
ROUNDS = sized(5, 1)
BLOCK_SIZES = (512, 1468)
SOURCE = Path("/usr/lib/ipxe/ipxe.efi")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait_until_answering(port: int, timeout: float = 10) -> None:
    """tftpd-hpa has no readiness signal: ask for a missing file until an ERROR comes back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            sock.sendto(b"\x00\x01no-such-file\x00octet\x00", (HOST, port))
            try:
                answer, _ = sock.recvfrom(600)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if struct.unpack("!H", answer[:2])[0] == 5:
                return
    raise RuntimeError(f"tftpd-hpa did not answer on port {port}")


def _round(port: int, blksize: int, out: Path, expected: bytes) -> float:
    """Start CLIENTS curl downloads at once; return the wall time, after checking every file."""
    for old in out.glob("*"):
        old.unlink()
    command = ["curl", "-sS", "--tftp-blksize", str(blksize)]
    url = f"tftp://{HOST}:{port}/ipxe.efi"
    began = time.perf_counter()
    clients = [subprocess.Popen([*command, "-o", str(out / f"{i}.efi"), url]) for i in range(CLIENTS)]
    codes = [client.wait(timeout=300) for client in clients]
    elapsed = time.perf_counter() - began
    bad = [i for i, code in enumerate(codes) if code or (out / f"{i}.efi").read_bytes() != expected]
    if bad:
        raise RuntimeError(f"{len(bad)} of {CLIENTS} downloads failed or differ (port {port}, blksize {blksize})")
    return elapsed


def main() -> int:
    for tool in ("curl", "in.tftpd"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            print(f"{tool} is not installed", file=sys.stderr)
            return 1
    if not SOURCE.is_file():
        print(f"{SOURCE} is missing (Debian package ipxe)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="octoprov-tftp-bench-"))
    root, out = base / "root", base / "out"
    root.mkdir()
    out.mkdir()
    shutil.copyfile(SOURCE, root / "ipxe.efi")
    base.chmod(0o755)  # tftpd-hpa drops to user nobody before reading
    root.chmod(0o755)
    (root / "ipxe.efi").chmod(0o644)
    expected = (root / "ipxe.efi").read_bytes()

    tftpd_port = _free_port()
    tftpd = subprocess.Popen(
        [shutil.which("in.tftpd") or "/usr/sbin/in.tftpd", "--foreground", "--address", f"{HOST}:{tftpd_port}",
         "--secure", str(root)],
    )
    octoprov = TftpServer(root, host=HOST, port=0)
    try:
        _wait_until_answering(tftpd_port)
        octoprov.start()
        results = {}
        for blksize in BLOCK_SIZES:
            _round(octoprov.port, blksize, out, expected)  # warm-up: page cache, curl binary
            _round(tftpd_port, blksize, out, expected)
            ours, theirs = [], []
            for _ in range(ROUNDS):  # interleaved, so drift on the machine hits both alike
                ours.append(_round(octoprov.port, blksize, out, expected))
                theirs.append(_round(tftpd_port, blksize, out, expected))
            results[blksize] = (statistics.median(ours), statistics.median(theirs), min(ours), min(theirs))
    finally:
        octoprov.stop()
        tftpd.terminate()
        try:
            tftpd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tftpd.kill()
            tftpd.wait()
        shutil.rmtree(base, ignore_errors=True)

    print(f"{CLIENTS} concurrent curl downloads of ipxe.efi ({len(expected)} bytes) on {HOST}, "
          f"median (best) of {ROUNDS} rounds, all byte-identical")
    print(f"{'blksize':>7} | {'octoprov s':>15} | {'tftpd-hpa s':>15} | {'octoprov/tftpd-hpa':>18}")
    print(f"{'-' * 7}-+-{'-' * 15}-+-{'-' * 15}-+-{'-' * 18}")
    for blksize, (ours, theirs, ours_best, theirs_best) in results.items():
        print(f"{blksize:>7} | {ours:>7.3f} ({ours_best:.3f}) | {theirs:>7.3f} ({theirs_best:.3f}) | "
              f"{ours / theirs:>18.2f}")
    for blksize, (ours, theirs, _, _) in results.items():
        ratio(f"tftp {CLIENTS} concurrent ipxe.efi, blksize {blksize}", ours, theirs, "s",
              goal="<= 1.2x" if blksize == 1468 else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
