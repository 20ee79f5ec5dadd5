"""Recognising qcow2 disk images (cloud images) by their header.

Octoprov learns that a Linux image is a cloud image from the file itself, not from what the
person registering it says: a qcow2 file starts with the magic ``QFI\\xfb``. The header also
holds the disk's virtual size, which a task's OS disk must not be smaller than. Images that
cannot stand on their own (a backing file, encryption) are refused at registration, when the
person can still act on it, rather than when a task uploads them to a host.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"QFI\xfb"
# magic, version, backing_file_offset, backing_file_size, cluster_bits, size, crypt_method (big endian)
_HEADER = struct.Struct(">4sIQIIQI")


@dataclass(frozen=True)
class Qcow2Info:
    version: int
    virtual_size: int


def read_header(path: Path) -> Qcow2Info | None:
    """The qcow2 header of ``path``, or None when the file is not qcow2. Raises ValueError for a
    qcow2 file Octoprov cannot use as a base image (the message suits the file's field)."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER.size)
    if not head.startswith(MAGIC):
        return None
    if len(head) < _HEADER.size:
        raise ValueError("is a truncated qcow2 file (its header is incomplete)")
    _magic, version, backing_offset, _backing_size, cluster_bits, size, crypt_method = _HEADER.unpack(head)
    if version not in (2, 3):
        raise ValueError(f"is a qcow2 file of version {version}; versions 2 and 3 are supported")
    if not 9 <= cluster_bits <= 21:
        raise ValueError(f"is not a valid qcow2 file (cluster bits {cluster_bits})")
    if backing_offset:
        raise ValueError("is a qcow2 overlay with a backing file; register a standalone image "
                         "(qemu-img convert -O qcow2 overlay.qcow2 image.qcow2)")
    if crypt_method:
        raise ValueError("is an encrypted qcow2 image; register an unencrypted one")
    if size == 0:
        raise ValueError("is a qcow2 image with a virtual size of 0 bytes")
    return Qcow2Info(version, size)
