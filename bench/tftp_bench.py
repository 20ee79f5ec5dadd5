"""50 simultaneous downloads of ipxe.efi from Octoprov's TftpServer and from tftpd-hpa.

Same client for both: 50 curl processes started together, each negotiating blksize and tsize as
PXE ROMs and iPXE do. Wall time runs from the first start to the last exit; every download is
compared byte for byte. The reference is tftpd-hpa (``in.tftpd --foreground --secure``, one forked
process per transfer), started here as a child process on its own port and stopped by PID.
Then one large file (a WinPE image's size class) to a single client, with and without RFC 7440
``windowsize``: curl and tftp-hpa's client have no windowsize, so a small Python client here asks for
it from both servers (tftpd-hpa does not acknowledge it and so serves it block by block). Printed
for information; the RATIO lines are the curl ones.
Run: ``.venv/bin/python -m bench.tftp_bench``.
"""

from __future__ import annotations

import os
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
LARGE_SIZE = sized(32 << 20, 2 << 20)  # above the server's CACHE_FILE_MAX: read block by block
WINDOWSIZE = 16


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


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


def _window_get(port: int, name: str, blksize: int, windowsize: int | None) -> bytes:
    """Download ``name`` as an RFC 7440 client: ACK the last block of each window (or, without the
    option in the OACK, every block); on a gap or a silence, ACK the last block received in order."""
    options = {"blksize": blksize} | ({"windowsize": windowsize} if windowsize else {})
    packet = b"\x00\x01" + name.encode() + b"\x00octet\x00" + b"".join(
        f"{key}\x00{value}\x00".encode() for key, value in options.items())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(packet, (HOST, port))
        answer, peer = sock.recvfrom(70000)
        if answer[:2] != b"\x00\x06":
            raise RuntimeError(f"expected an OACK from port {port}, got {answer[:20]!r}")
        fields = answer[2:].split(b"\x00")[:-1]
        acknowledged = {fields[i].decode(): int(fields[i + 1]) for i in range(0, len(fields), 2)}
        window = acknowledged.get("windowsize", 1)
        sock.sendto(b"\x00\x04\x00\x00", peer)
        chunks: list[bytes] = []
        in_window, reported = 0, -1
        while True:
            try:
                data = sock.recv(70000)
            except TimeoutError:
                sock.sendto(struct.pack("!HH", 4, len(chunks) & 0xFFFF), peer)
                in_window = 0
                continue
            block = struct.unpack("!H", data[2:4])[0]
            if block == (len(chunks) + 1) & 0xFFFF:
                chunks.append(data[4:])
                in_window += 1
                if len(data) - 4 < blksize or in_window == window:
                    sock.sendto(struct.pack("!HH", 4, block), peer)
                    in_window = 0
                    if len(data) - 4 < blksize:
                        return b"".join(chunks)
            elif (block - len(chunks) - 1) & 0xFFFF < 0x8000 and reported != len(chunks):  # a gap
                sock.sendto(struct.pack("!HH", 4, len(chunks) & 0xFFFF), peer)
                in_window, reported = 0, len(chunks)


def _large(port: int, windowsize: int | None, expected: bytes) -> float:
    began = time.perf_counter()
    if _window_get(port, "large.bin", 1468, windowsize) != expected:
        raise RuntimeError(f"large.bin from port {port} differs (windowsize {windowsize})")
    return time.perf_counter() - began


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
    large = os.urandom(LARGE_SIZE)
    (root / "large.bin").write_bytes(large)
    (root / "large.bin").chmod(0o644)

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
        windowed = [_large(octoprov.port, WINDOWSIZE, large) for _ in range(ROUNDS)]
        lockstep = [_large(octoprov.port, None, large) for _ in range(ROUNDS)]
        reference = [_large(tftpd_port, WINDOWSIZE, large) for _ in range(ROUNDS)]
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
    for blksize, (median, reference_median, best, reference_best) in results.items():
        print(f"{blksize:>7} | {median:>7.3f} ({best:.3f}) | {reference_median:>7.3f} ({reference_best:.3f}) | "
              f"{median / reference_median:>18.2f}")
    print(f"one {LARGE_SIZE >> 20} MiB file, blksize 1468, one Python client, median of {ROUNDS}: octoprov "
          f"windowsize {WINDOWSIZE} {statistics.median(windowed):.3f} s, octoprov lock-step "
          f"{statistics.median(lockstep):.3f} s, tftpd-hpa (no windowsize: lock-step) "
          f"{statistics.median(reference):.3f} s")
    for blksize, (median, reference_median, _, _) in results.items():
        ratio(f"tftp {CLIENTS} concurrent ipxe.efi, blksize {blksize}", median, reference_median, "s",
              goal="<= 1.2x" if blksize == 1468 else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
