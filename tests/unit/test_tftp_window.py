"""The TFTP server's pieces without a socket: option negotiation, cutting a file into DATA packets,
and the bound on the memory the kept files take."""

from __future__ import annotations

import os
import struct

import pytest

from octoprov.netboot.tftp import _cut, _negotiate, _PacketCache


@pytest.mark.parametrize(
    ("requested", "accepted"),
    [
        ({"windowsize": "8"}, {"windowsize": 8}),
        ({"WindowSize": "1"}, {"windowsize": 1}),
        ({"windowsize": "0"}, {}),
        ({"windowsize": "65536"}, {}),
        ({"windowsize": "-4"}, {}),
        ({"windowsize": "65535", "blksize": "512"}, {"windowsize": 16, "blksize": 512}),
        ({"windowsize": "16", "blksize": "16384"}, {"windowsize": 4, "blksize": 16384}),  # 64 KiB in flight
        ({"blksize": "65464", "windowsize": "2"}, {"blksize": 65464, "windowsize": 1}),
    ],
)
def test_windowsize_negotiation(requested, accepted):
    assert _negotiate(requested, 1000) == accepted


@pytest.mark.parametrize(("size", "blksize"), [(0, 512), (1, 512), (512, 512), (1025, 512), (4096, 1468)])
def test_cut_numbers_blocks_from_one_and_ends_short(size, blksize):
    data = os.urandom(size)
    packets = _cut(data, blksize)
    assert len(packets) == size // blksize + 1
    assert [struct.unpack("!HH", p[:4]) for p in packets] == [(3, n) for n in range(1, len(packets) + 1)]
    assert b"".join(p[4:] for p in packets) == data
    assert all(len(p) == blksize + 4 for p in packets[:-1]) and len(packets[-1]) < blksize + 4


def test_cut_wraps_block_numbers_to_zero():
    packets = _cut(bytes(8 * 65537), 8)
    assert [struct.unpack("!H", packets[i][2:4])[0] for i in (0, 65534, 65535, 65536, 65537)] == [1, 65535, 0, 1, 2]


def test_cache_keeps_within_its_bound_and_drops_the_least_recently_used(tmp_path):
    cache = _PacketCache(total=30_000)
    files = {}
    for number in range(4):
        path = tmp_path / f"f{number}"
        path.write_bytes(os.urandom(9_000))
        files[number] = (str(path), 0, number, 9_000, 0, 0), path
    for number in (0, 1, 2):
        key, path = files[number]
        fd = os.open(path, os.O_RDONLY)
        try:
            assert cache.data(key, fd, 9_000) == path.read_bytes()
        finally:
            os.close(fd)
    assert cache._used <= 30_000
    key0, path0 = files[0]
    assert cache.data(key0, -1, 9_000) == path0.read_bytes()  # kept: not read again (-1 is no descriptor)
    key3, path3 = files[3]
    fd = os.open(path3, os.O_RDONLY)
    try:
        cache.data(key3, fd, 9_000)  # over the bound: the least recently used (1) goes, not 0
    finally:
        os.close(fd)
    assert cache._used <= 30_000
    assert cache.data(key0, -1, 9_000) == path0.read_bytes()
    with pytest.raises(OSError):
        cache.data(files[1][0], -1, 9_000)  # gone: it has to be read again
