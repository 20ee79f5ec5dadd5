"""The TFTP server against real clients (tftp-hpa, curl, busybox), a raw one that shows the packets and
an RFC 7440 (windowsize) one, since none of the real ones speaks it.

Everything runs on 127.0.0.1 with ports the kernel picks; every server is stopped by its fixture.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from octoprov.netboot import grub, tftp
from octoprov.netboot.tftp import IPXE_BINARIES, TftpServer, prepare_root
from octoprov.settings import Settings

HOST = "127.0.0.1"
DEBIAN_IPXE_EFI = Path("/usr/lib/ipxe/ipxe.efi")
RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6


def _needs(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


# -- a raw client: what the firmware does, packet by packet -----------------------------------


class TftpError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"TFTP error {code}: {message}")
        self.code = code


def request(name: str | bytes, mode: str = "octet", opcode: int = RRQ, **options) -> bytes:
    name = name if isinstance(name, bytes) else name.encode()
    packet = struct.pack("!H", opcode) + name + b"\0" + mode.encode() + b"\0"
    for key, value in options.items():
        packet += key.encode() + b"\0" + str(value).encode() + b"\0"
    return packet


def ack(block: int) -> bytes:
    return struct.pack("!HH", ACK, block)


def parse_options(payload: bytes) -> dict[str, str]:
    fields = payload.split(b"\0")[:-1]
    return {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields), 2)}


def raise_error(packet: bytes):
    code = struct.unpack("!H", packet[2:4])[0]
    raise TftpError(code, packet[4:].rstrip(b"\0").decode(errors="replace"))


def raw_get(port: int, name: str, packet: bytes | None = None, sock: socket.socket | None = None,
            wait: float = 5, **options):
    """Download ``name``; returns (OACK options or None, data, sizes of the DATA blocks)."""
    own = sock is None
    sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(wait)
        if own:
            sock.bind((HOST, 0))
        sock.sendto(packet or request(name, **options), (HOST, port))
        oack, blocks, blksize, peer = None, [], 512, None
        while True:
            data, source = sock.recvfrom(70000)
            assert peer in (None, source), "every packet of a transfer comes from one TID"
            peer = source
            assert source[1] != port, "the transfer runs on its own port, not the listening one"
            opcode = struct.unpack("!H", data[:2])[0]
            if opcode == ERROR:
                raise_error(data)
            if opcode == OACK:
                assert not blocks
                oack = parse_options(data[2:])
                blksize = int(oack.get("blksize", 512))
                sock.sendto(ack(0), source)
                continue
            assert opcode == DATA
            block = struct.unpack("!H", data[2:4])[0]
            if block == len(blocks) + 1:
                blocks.append(data[4:])
            sock.sendto(ack(block), source)
            if block == len(blocks) and len(data) - 4 < blksize:
                return oack, b"".join(blocks), [len(b) for b in blocks]
    finally:
        if own:
            sock.close()


def raw_error(port: int, packet: bytes) -> TftpError:
    """Send one request that must be refused; returns the ERROR it got."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, (HOST, port))
        data, _ = sock.recvfrom(70000)
    assert struct.unpack("!H", data[:2])[0] == ERROR, f"expected an ERROR packet, got {data[:20]!r}"
    try:
        raise_error(data)
    except TftpError as error:
        return error


def wait_for_log(caplog, text: str, timeout: float = 5) -> str:
    """The server logs a transfer when the last ACK arrives, which may be after the client exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        time.sleep(0.02)
    raise AssertionError(f"no log line containing {text!r}")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "tftp"
    root.mkdir()
    if DEBIAN_IPXE_EFI.is_file():
        shutil.copyfile(DEBIAN_IPXE_EFI, root / "ipxe.efi")
    else:
        (root / "ipxe.efi").write_bytes(random.Random(7).randbytes(850_528))
    (root / "empty.bin").write_bytes(b"")
    (root / "exact.bin").write_bytes(bytes(range(256)) * 16)  # 4 blocks of 1024: the 5th is empty
    return root


@pytest.fixture
def server(root):
    server = TftpServer(root, host=HOST, port=0, timeout=2, retries=3)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ipxe_efi(root) -> bytes:
    return (root / "ipxe.efi").read_bytes()


# -- real clients ------------------------------------------------------------------------------


@_needs("tftp")
def test_tftp_hpa_client_downloads_ipxe_efi(server, ipxe_efi, tmp_path):
    local = tmp_path / "got.efi"
    run = subprocess.run(
        ["tftp", "-v", "-m", "binary", HOST, str(server.port), "-c", "get", "ipxe.efi", str(local)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert local.read_bytes() == ipxe_efi


@_needs("tftp")
def test_tftp_hpa_client_without_options_gets_plain_512_byte_blocks(server, ipxe_efi, tmp_path):
    """tftp-hpa 5.2's client has no blksize command (it sends no options): RFC 1350 as is, traced."""
    local = tmp_path / "got.efi"
    commands = f"binary\ntrace\nget ipxe.efi {local}\nquit\n"
    run = subprocess.run(["tftp", HOST, str(server.port)], input=commands, capture_output=True, text=True, timeout=60)
    assert local.read_bytes() == ipxe_efi
    assert "OACK" not in run.stdout
    assert "received DATA <block=1, 512 bytes>" in run.stdout


@_needs("curl")
def test_curl_downloads_with_blksize_1468(server, ipxe_efi, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="octoprov.netboot.tftp")
    local = tmp_path / "got.efi"
    run = subprocess.run(
        ["curl", "-sS", "--tftp-blksize", "1468", "-o", str(local), f"tftp://{HOST}:{server.port}/ipxe.efi"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert local.read_bytes() == ipxe_efi
    line = wait_for_log(caplog, "'ipxe.efi' to 127.0.0.1")
    assert f"sent: {len(ipxe_efi)} bytes" in line and "blksize 1468" in line


@_needs("busybox")
def test_busybox_downloads_with_blksize_1468(server, ipxe_efi, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="octoprov.netboot.tftp")
    local = tmp_path / "got.efi"
    run = subprocess.run(
        ["busybox", "tftp", "-g", "-r", "ipxe.efi", "-l", str(local), "-b", "1468", HOST, str(server.port)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert local.read_bytes() == ipxe_efi
    assert "blksize 1468" in wait_for_log(caplog, "'ipxe.efi' to 127.0.0.1")


def test_one_info_line_per_transfer(server, ipxe_efi, caplog):
    caplog.set_level(logging.DEBUG, logger="octoprov.netboot.tftp")
    caplog.set_level(logging.INFO, logger="tftpy")
    raw_get(server.port, "ipxe.efi", blksize=1468)
    wait_for_log(caplog, "'ipxe.efi' to 127.0.0.1")
    # the server's own start-up line may land in the capture too; count what the transfer logged
    info = [r for r in caplog.records if r.levelno >= logging.INFO and "serving" not in r.getMessage()]
    assert len(info) == 1, [r.getMessage() for r in info]
    assert f"sent: {len(ipxe_efi)} bytes" in info[0].getMessage()


# -- option negotiation (RFC 2347, 2348, 2349) --------------------------------------------------


def test_oack_carries_blksize_tsize_and_timeout(server, ipxe_efi):
    oack, data, sizes = raw_get(server.port, "ipxe.efi", blksize=1024, tsize=0, timeout=3)
    assert oack == {"blksize": "1024", "tsize": str(len(ipxe_efi)), "timeout": "3"}
    assert data == ipxe_efi
    assert set(sizes[:-1]) == {1024} and sizes[-1] < 1024


@pytest.mark.parametrize(
    ("options", "expected_oack", "block"),
    [
        ({}, None, 512),  # no options: straight to DATA, no OACK
        ({"tsize": 0}, {"tsize": "SIZE"}, 512),  # only what was asked for: no blksize in the OACK
        ({"BlkSize": 1432}, {"blksize": "1432"}, 1432),  # option names are case-insensitive
        ({"blksize": 70000}, {"blksize": "65464"}, 65464),  # above RFC 2348's maximum: the maximum
        ({"blksize": 4}, None, 512),  # below the minimum: ignored
        ({"blksize": "12x"}, None, 512),  # not a number: ignored, and no crash
        ({"timeout": 0}, None, 512),  # outside 1-255: ignored
        ({"timeout": 256, "tsize": 0}, {"tsize": "SIZE"}, 512),
        ({"windowsize": 0}, None, 512),  # outside RFC 7440's 1-65535: ignored
        ({"windowsize": 65536, "tsize": 0}, {"tsize": "SIZE"}, 512),
    ],
)
def test_only_requested_valid_options_are_acknowledged(server, ipxe_efi, options, expected_oack, block):
    oack, data, sizes = raw_get(server.port, "ipxe.efi", **options)
    if expected_oack is not None:
        expected_oack = {k: str(len(ipxe_efi)) if v == "SIZE" else v for k, v in expected_oack.items()}
    assert oack == expected_oack
    assert data == ipxe_efi
    assert sizes[0] == block


def test_size_multiple_of_blksize_ends_with_empty_block(server, root):
    _, data, sizes = raw_get(server.port, "exact.bin", blksize=1024)
    assert data == (root / "exact.bin").read_bytes() and sizes == [1024, 1024, 1024, 1024, 0]
    oack, data, sizes = raw_get(server.port, "empty.bin", tsize=0)
    assert oack == {"tsize": "0"} and data == b"" and sizes == [0]


def test_negotiated_timeout_sets_the_retransmission_delay(server):
    """The server waits 2 s by default; the client asks for 1 s and gets its unanswered DATA again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(request("ipxe.efi", timeout=1), (HOST, server.port))
        oack, peer = sock.recvfrom(70000)
        assert parse_options(oack[2:]) == {"timeout": "1"}
        sock.sendto(ack(0), peer)
        first, _ = sock.recvfrom(70000)
        began = time.monotonic()
        again, _ = sock.recvfrom(70000)  # no ACK sent: the same block comes again
        waited = time.monotonic() - began
        assert again == first and first[:4] == struct.pack("!HH", DATA, 1)
        assert 0.8 <= waited < 1.9


def test_pxe_rom_tsize_probe_then_real_download(server, ipxe_efi):
    """PXE ROMs ask for tsize, end with an ERROR after the OACK, then ask again from the same port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((HOST, 0))
        sock.sendto(request("ipxe.efi", tsize=0), (HOST, server.port))
        oack, peer = sock.recvfrom(70000)
        assert parse_options(oack[2:]) == {"tsize": str(len(ipxe_efi))}
        sock.sendto(struct.pack("!HH", ERROR, 0) + b"tsize probe done\0", peer)
        _, data, _ = raw_get(server.port, "ipxe.efi", sock=sock, blksize=1456)
    assert data == ipxe_efi


def test_packet_from_a_stranger_gets_unknown_tid_and_transfer_goes_on(server, ipxe_efi):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        sock.settimeout(5)
        stranger.settimeout(5)
        sock.sendto(request("ipxe.efi", blksize=1024), (HOST, server.port))
        _, peer = sock.recvfrom(70000)
        stranger.sendto(ack(0), peer)
        answer, _ = stranger.recvfrom(100)
        assert struct.unpack("!HH", answer[:4]) == (ERROR, 5)
        sock.sendto(ack(0), peer)
        received = b""
        for block in range(1, 10_000):
            data, _ = sock.recvfrom(70000)
            assert struct.unpack("!HH", data[:4]) == (DATA, block)
            received += data[4:]
            sock.sendto(ack(block), peer)
            if len(data) - 4 < 1024:
                break
    assert received == ipxe_efi


# -- windowsize (RFC 7440) ---------------------------------------------------------------------


def window_get(port: int, name: str, drop: tuple[int, ...] = (), patience: float = 5, **options):
    """An RFC 7440 client (curl and tftp-hpa have none): it ACKs the last block of each window, the last
    block of the file, and on a gap (or when nothing comes for ``patience`` seconds) the last block it
    got in order, once. It ignores the first arrival of each block counted in ``drop`` (from 1, not
    wrapped), as if the network lost it. Without ``windowsize`` it ACKs every block (RFC 1350).
    Returns (OACK options, data, block counts in order of arrival: every DATA packet received, and how
    many times it waited in vain); it gives up after three such waits."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(5)
        sock.sendto(request(name, **options), (HOST, port))
        answer, peer = sock.recvfrom(70000)
        if struct.unpack("!H", answer[:2])[0] == ERROR:
            raise_error(answer)
        assert struct.unpack("!H", answer[:2])[0] == OACK
        oack = parse_options(answer[2:])
        blksize, window = int(oack.get("blksize", 512)), int(oack.get("windowsize", 1))
        sock.sendto(ack(0), peer)
        sock.settimeout(patience)
        chunks: list[bytes] = []
        arrivals: list[int] = []
        to_drop = set(drop)
        in_window, reported, timeouts = 0, None, 0
        while True:
            try:
                data, source = sock.recvfrom(70000)
            except TimeoutError:  # RFC 7440: on a timeout, ACK the last block received in order
                timeouts += 1
                assert timeouts <= 3, f"stuck after block {len(chunks)}"
                sock.sendto(ack(len(chunks) & 0xFFFF), peer)
                in_window = 0
                continue
            assert source == peer and struct.unpack("!H", data[:2])[0] == DATA
            expected = len(chunks) + 1
            wire = struct.unpack("!H", data[2:4])[0]
            ahead = (wire - expected) & 0xFFFF  # 0: the next block; small: a gap; large: a repeat
            count = expected + ahead if ahead < 0x8000 else expected + ahead - 0x10000
            arrivals.append(count)
            if count in to_drop:
                to_drop.discard(count)
                continue
            if ahead == 0:
                chunks.append(data[4:])
                in_window += 1
                final = len(data) - 4 < blksize
                if final or in_window == window:
                    sock.sendto(ack(wire), peer)
                    in_window = 0
                if final:
                    return oack, b"".join(chunks), arrivals, timeouts
            elif ahead < 0x8000 and reported != expected:  # a gap: say where it is, once
                sock.sendto(ack((expected - 1) & 0xFFFF), peer)
                in_window, reported = 0, expected


def test_windowsize_is_acknowledged_and_the_file_comes_whole(server, ipxe_efi, caplog):
    caplog.set_level(logging.INFO, logger="octoprov.netboot.tftp")
    oack, data, arrivals, _ = window_get(server.port, "ipxe.efi", blksize=1468, windowsize=8, tsize=0)
    assert oack == {"blksize": "1468", "windowsize": "8", "tsize": str(len(ipxe_efi))}
    assert data == ipxe_efi
    blocks = len(ipxe_efi) // 1468 + 1
    assert arrivals == list(range(1, blocks + 1)), "each block once, in order"
    line = wait_for_log(caplog, "'ipxe.efi' to 127.0.0.1")
    assert f"sent: {len(ipxe_efi)} bytes" in line and "windowsize 8, 0 bytes resent" in line


@pytest.mark.parametrize(
    ("asked", "blksize", "answered"),
    [
        (1, 512, "1"),  # the RFC's smallest: lock-step, said so
        (64, 512, "16"),  # above what this server sends at once: lowered (RFC 7440 lets the server)
        (65535, 1468, "16"),
        (16, 8192, "8"),  # no more than 64 KiB in flight
        (4, 65464, "1"),
    ],
)
def test_windowsize_is_capped(server, ipxe_efi, asked, blksize, answered):
    oack, data, _, _ = window_get(server.port, "ipxe.efi", blksize=blksize, windowsize=asked)
    assert oack == {"blksize": str(blksize), "windowsize": answered}
    assert data == ipxe_efi


@pytest.mark.parametrize(
    ("drop", "waits"),
    [
        ((21,), 0),  # inside a window (blocks 17-24): the client ACKs 20 at the gap, the server goes on from 21
        ((17,), 0),  # a window's first block: the client repeats its last ACK (16), the window comes again
        ((24,), 1),  # a window's last block: nothing after it shows the gap; the client's timeout ACKs 23
        # several: 2 and 3 (found at 4), 40 and 41 (the end of the window 34-41: a timeout), 42 (the next
        # window's first block, found at 43) and the file's last block (a timeout)
        ((2, 3, 40, 41, 42, -1), 2),
    ],
)
def test_windowed_transfer_recovers_a_lost_block(server, ipxe_efi, drop, waits, caplog):
    """Recovered by the client's ACK of the last block it got in order: the negotiated timeout of 255 s
    keeps the server's own retransmission out of it."""
    caplog.set_level(logging.INFO, logger="octoprov.netboot.tftp")
    blocks = len(ipxe_efi) // 1468 + 1
    drop = tuple(blocks if block == -1 else block for block in drop)
    _, data, arrivals, timeouts = window_get(server.port, "ipxe.efi", drop=drop, patience=0.5, blksize=1468,
                                             windowsize=8, timeout=255)
    assert data == ipxe_efi
    assert timeouts == waits
    for block in drop:
        assert arrivals.count(block) == 2  # lost once, sent again
    assert len(arrivals) <= blocks + 8 * len(drop), "a loss costs at most one window again"
    line = wait_for_log(caplog, "'ipxe.efi' to 127.0.0.1")
    assert f"sent: {len(ipxe_efi)} bytes" in line and ", 0 bytes resent" not in line


@pytest.mark.parametrize("windowsize", [None, 16])
def test_block_numbers_wrap_around_after_65535(server, ipxe_efi, windowsize):
    """With blksize 8 ipxe.efi takes more than 65535 blocks: the block after 65535 is numbered 0."""
    options = {"blksize": 8} | ({"windowsize": windowsize} if windowsize else {})
    assert len(ipxe_efi) // 8 + 1 > 65536
    _, data, arrivals, _ = window_get(server.port, "ipxe.efi", **options)
    assert data == ipxe_efi
    assert arrivals == list(range(1, len(ipxe_efi) // 8 + 2))


def test_windowed_transfer_of_a_file_read_block_by_block(server, root, monkeypatch):
    """Files above CACHE_FILE_MAX are not kept in memory: read at each block's offset, also when a
    window goes again."""
    monkeypatch.setattr(tftp, "CACHE_FILE_MAX", 10_000)
    content = random.Random(5).randbytes(300_000)
    (root / "big.bin").write_bytes(content)
    assert window_get(server.port, "big.bin", drop=(30, 100), blksize=1024, windowsize=16)[1] == content
    assert raw_get(server.port, "big.bin", blksize=1024)[1] == content
    assert raw_get(server.port, "big.bin")[1] == content


def test_a_changed_file_is_read_again(server, root):
    """Small files are kept in memory, by path, inode, size and times: rewriting one in place, even at the
    same size, or replacing it by a rename as prepare_root does, serves the new content."""
    (root / "kept.bin").write_bytes(b"A" * 5000)
    assert raw_get(server.port, "kept.bin", blksize=1468)[1] == b"A" * 5000
    before = (root / "kept.bin").stat()
    with open(root / "kept.bin", "r+b") as rewrite:
        rewrite.write(b"B" * 5000)
    os.utime(root / "kept.bin", ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert raw_get(server.port, "kept.bin", blksize=1468)[1] == b"B" * 5000
    (root / "new.bin").write_bytes(b"C" * 5000)
    os.replace(root / "new.bin", root / "kept.bin")
    assert raw_get(server.port, "kept.bin", blksize=1468)[1] == b"C" * 5000
    assert raw_get(server.port, "kept.bin")[1] == b"C" * 5000


# -- confinement and refusals ------------------------------------------------------------------


@pytest.fixture
def hostile_root(root):
    (root / "subdir").mkdir()
    (root / "passwd-link").symlink_to("/etc/passwd")
    (root / "etc-link").symlink_to("/etc")
    (root / "loop").symlink_to("loop")
    (root / "inner-link.efi").symlink_to("ipxe.efi")
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../etc/passwd", 2),
        ("/etc/passwd", 1),  # a leading slash means the root (like tftpd-hpa --secure): ROOT/etc/passwd
        ("//etc/passwd", 1),
        ("..\\..\\etc\\passwd", 2),
        ("subdir/../../etc/passwd", 2),
        ("passwd-link", 2),  # a symlink in the root pointing out of it
        ("etc-link/passwd", 2),  # a symlinked folder pointing out of it
        ("loop", 2),
        ("subdir", 2),  # a folder
        (".", 2),
        ("", 2),
        ("fifo", 2),  # must not block the server
        ("missing.efi", 1),
        ("ipxe.efi/child", 1),
    ],
)
def test_refused_names_get_an_error_and_the_server_keeps_serving(server, hostile_root, ipxe_efi, name, code):
    error = raw_error(server.port, request(name, blksize=1468, tsize=0))
    assert error.code == code
    assert raw_get(server.port, "ipxe.efi", blksize=1468)[1] == ipxe_efi


@pytest.mark.parametrize("name", ["/ipxe.efi", "\\ipxe.efi", "inner-link.efi", "./ipxe.efi", "ROOT/ipxe.efi"])
def test_other_spellings_of_a_file_in_the_root_are_served(server, hostile_root, ipxe_efi, name):
    name = name.replace("ROOT", str(hostile_root))
    assert raw_get(server.port, name)[1] == ipxe_efi


@pytest.mark.parametrize(
    ("packet", "code"),
    [
        (b"\x00", None),
        (b"\x00\x01ipxe.efi", 4),  # no terminators
        (b"\x00\x01ipxe.efi\x00octet\x00blksize\x00", 4),  # an option without a value
        (b"\x00\x01\xff\xfe.efi\x00octet\x00", 4),  # not ASCII
        (b"\x00\x09junk", 4),  # no such opcode
        (struct.pack("!HH", ACK, 1), 4),  # an ACK to the listening port
        (struct.pack("!HH", ERROR, 0) + b"bye\0", None),  # an ERROR is never answered
        (request("ipxe.efi", mode="netascii"), 4),
        (request("ipxe.efi", mode="mail"), 4),
    ],
)
def test_malformed_requests_do_not_stop_the_server(server, ipxe_efi, packet, code):
    if code is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            sock.sendto(packet, (HOST, server.port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(100)
    else:
        assert raw_error(server.port, packet).code == code
    assert raw_get(server.port, "ipxe.efi", blksize=1468)[1] == ipxe_efi


@pytest.mark.parametrize("name", ["upload.bin", "ipxe.efi", "../upload.bin"])
def test_write_request_is_refused_and_writes_nothing(server, root, ipxe_efi, name):
    before = {path: path.read_bytes() for path in root.iterdir()}
    error = raw_error(server.port, request(name, opcode=WRQ, tsize=10))
    assert error.code == 2 and "Access violation" in str(error)
    assert {path: path.read_bytes() for path in root.iterdir()} == before
    assert not (root.parent / "upload.bin").exists()


# -- many clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("loops", [1, 3])
def test_twenty_concurrent_downloads(root, ipxe_efi, loops):
    """However many event loops share the transfers (by default one per core, up to two)."""
    with TftpServer(root, host=HOST, port=0, loops=loops) as server, ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(
            lambda i: (raw_get(server.port, "ipxe.efi", blksize=(512, 1024, 1468, 8192)[i % 4], tsize=0) if i % 2
                       else window_get(server.port, "ipxe.efi", blksize=(512, 1468)[i % 4 // 2], tsize=0,
                                       windowsize=8)[:3]),
            range(20),
        ))
        assert len(server._server.running_loops) == loops
    assert len(results) == 20
    for oack, data, _ in results:
        assert oack["tsize"] == str(len(ipxe_efi))
        assert data == ipxe_efi


# -- lifecycle ---------------------------------------------------------------------------------


def test_start_binds_picks_a_port_and_stop_releases_it(root):
    server = TftpServer(root, host=HOST, port=0)
    with server:
        assert server.running and server.port > 1024
        port = server.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other, pytest.raises(OSError):
            other.bind((HOST, port))
        busy = TftpServer(root, host=HOST, port=port)
        with pytest.raises(OSError):
            busy.start()
    assert not server.running
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((HOST, port))  # released
    server.stop()  # stopping twice is harmless


def test_server_can_be_restarted(root, ipxe_efi):
    server = TftpServer(root, host=HOST, port=0)
    for _ in range(2):
        with server:
            assert raw_get(server.port, "ipxe.efi", blksize=1468)[1] == ipxe_efi


def test_stop_cuts_off_a_running_transfer(root):
    server = TftpServer(root, host=HOST, port=0).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(request("ipxe.efi"), (HOST, server.port))
            sock.recvfrom(70000)  # block 1, never acknowledged
            began = time.monotonic()
            server.stop()
            assert time.monotonic() - began < 1
    finally:
        server.stop()


def test_stop_with_grace_lets_a_running_transfer_finish_and_takes_no_new_one(root, ipxe_efi):
    server = TftpServer(root, host=HOST, port=0).start()
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(request("ipxe.efi", blksize=1024), (HOST, server.port))
            _, peer = sock.recvfrom(70000)
            stopper.start()
            time.sleep(0.2)
            with pytest.raises(TimeoutError):  # a new request during the grace period: no answer
                raw_get(server.port, "ipxe.efi", wait=0.5)
            assert stopper.is_alive()
            sock.sendto(ack(0), peer)
            received = b""
            for block in range(1, 10_000):
                data, _ = sock.recvfrom(70000)
                received += data[4:]
                sock.sendto(ack(block), peer)
                if len(data) - 4 < 1024:
                    break
        assert received == ipxe_efi
        stopper.join(5)
        assert not stopper.is_alive() and not server.running
    finally:
        server.stop()


def test_root_must_be_a_folder(tmp_path):
    with pytest.raises(NotADirectoryError):
        TftpServer(tmp_path / "nope", host=HOST, port=0)


# -- prepare_root ------------------------------------------------------------------------------


def test_prepare_root_copies_the_binaries_and_skips_missing_ones(tmp_path, caplog):
    ipxe_dir, boot = tmp_path / "ipxe", tmp_path / "boot"
    ipxe_dir.mkdir()
    boot.mkdir()
    (ipxe_dir / "undionly.kpxe").write_bytes(b"U" * 1000)
    (boot / "ipxe.efi").write_bytes(b"E" * 3000)
    (ipxe_dir / "ipxe.efi").symlink_to(boot / "ipxe.efi")  # as in Debian's ipxe package
    settings = Settings(data_dir=tmp_path / "var", ipxe_dir=ipxe_dir, signed_boot_dir=tmp_path / "nothing")

    with caplog.at_level(logging.WARNING, logger="octoprov.netboot.tftp"):
        root = prepare_root(settings)
    assert root == settings.effective_tftp_root and root.is_dir()
    for name, content in (("undionly.kpxe", b"U" * 1000), ("ipxe.efi", b"E" * 3000)):
        assert not (root / name).is_symlink() and (root / name).read_bytes() == content
        assert (root / name).stat().st_mode & 0o777 == 0o644
    assert not (root / "snponly.efi").exists()
    assert "snponly.efi" in caplog.text
    # no temporary files left; GRUB's entry file is written even without the signed binaries
    assert sorted(p.name for p in root.iterdir()) == ["grub", "ipxe.efi", "undionly.kpxe"]
    assert [p.name for p in (root / "grub").iterdir()] == ["grub.cfg"]

    # unchanged size: left alone; changed size: copied again; a symlink in the root: replaced by a copy
    untouched = (root / "undionly.kpxe").stat().st_ino
    (boot / "ipxe.efi").write_bytes(b"F" * 3500)
    (ipxe_dir / "snponly.efi").write_bytes(b"S" * 10)
    (root / "snponly.efi").symlink_to(ipxe_dir / "snponly.efi")
    prepare_root(settings)
    assert (root / "undionly.kpxe").stat().st_ino == untouched
    assert (root / "ipxe.efi").read_bytes() == b"F" * 3500
    assert not (root / "snponly.efi").is_symlink() and (root / "snponly.efi").read_bytes() == b"S" * 10
    assert {*IPXE_BINARIES, "grub"} == {p.name for p in root.iterdir()}


def test_prepared_root_is_served(tmp_path):
    ipxe_dir = tmp_path / "ipxe"
    ipxe_dir.mkdir()
    for index, name in enumerate(IPXE_BINARIES):
        (ipxe_dir / name).write_bytes(random.Random(index).randbytes(5000 + index))
    root = prepare_root(Settings(data_dir=tmp_path / "var", ipxe_dir=ipxe_dir))
    with TftpServer(root, host=HOST, port=0) as server:
        for name in IPXE_BINARIES:
            assert raw_get(server.port, name, blksize=1468)[1] == (ipxe_dir / name).read_bytes()


def test_prepare_root_adds_the_signed_chain_and_the_grub_entry(tmp_path):
    signed = tmp_path / "signed" / "usr" / "lib"
    for name, relative in grub.SIGNED_SOURCES.items():
        (signed / relative).parent.mkdir(parents=True, exist_ok=True)
        (signed / relative).write_bytes(name.encode() * 100)
    settings = Settings(data_dir=tmp_path / "var", ipxe_dir=tmp_path / "no-ipxe", signed_boot_dir=signed)
    root = prepare_root(settings)
    assert (root / "shimx64.efi").read_bytes() == b"shimx64.efi" * 100
    assert (root / "grubx64.efi").read_bytes() == b"grubx64.efi" * 100
    assert (root / "grub" / "grub.cfg").read_text() == grub.ENTRY
    (root / "grub" / "grub.cfg").write_text("x" * len(grub.ENTRY))  # same size, other content: written again
    prepare_root(settings)
    assert (root / "grub" / "grub.cfg").read_text() == grub.ENTRY


def test_mounts_and_rendered_files(root, tmp_path):
    """The image library under images/ (confined like the root) and files made when asked."""
    library = tmp_path / "library"
    (library / "tiny").mkdir(parents=True)
    kernel = random.Random(3).randbytes(70_000)
    (library / "tiny" / "vmlinuz").write_bytes(kernel)
    (tmp_path / "secret").write_text("outside the library")
    asked: list[tuple[str, str]] = []

    def rendered(name: str, client: str) -> bytes | None:
        asked.append((name, client))
        return b"configfile for " + name.encode() if name.startswith("grub/octoprov/") else None

    with TftpServer(root, host=HOST, port=0, mounts={"images": library}, rendered=rendered) as server:
        assert raw_get(server.port, "images/tiny/vmlinuz", blksize=1024)[1] == kernel
        assert raw_get(server.port, "/images/tiny/vmlinuz")[1] == kernel
        body = raw_get(server.port, "grub/octoprov/52:54:00:6f:71:01.cfg")[1]
        assert body == b"configfile for grub/octoprov/52:54:00:6f:71:01.cfg"
        assert ("grub/octoprov/52:54:00:6f:71:01.cfg", HOST) in asked
        assert raw_get(server.port, "ipxe.efi")[1] == (root / "ipxe.efi").read_bytes()  # the root as before
        assert raw_error(server.port, request("images/../secret")).code == 2  # access violation
        assert raw_error(server.port, request("images/tiny/missing")).code == 1  # file not found
        assert raw_error(server.port, request("images")).code in (1, 2)  # the mount itself is not a file


def test_a_failing_renderer_refuses_only_its_request(root):
    def rendered(name: str, client: str) -> bytes | None:
        raise RuntimeError("database is down")

    with TftpServer(root, host=HOST, port=0, rendered=rendered) as server:
        assert raw_error(server.port, request("grub/octoprov/x.cfg")).code == 0
        assert raw_error(server.port, request("grub/octoprov/x.cfg")).code == 0  # still serving
