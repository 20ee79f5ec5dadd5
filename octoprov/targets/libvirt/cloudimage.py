"""Cloud images on a libvirt host: the shared base volume, the machine's overlay, its seed volume.

Everything goes through the libvirt API (``storageVolUpload`` streams, volume XML), never through
paths on the worker, so it works the same on a remote ``qemu+ssh://`` host as on the local one.

- The image is uploaded once per storage pool, into a volume named by its SHA-256
  (``octoprov-image-<sha256>``), and shared by every task that boots it. A second, empty volume
  (``….ready``) is created only once the upload has finished, so a task never builds on half an
  image; rollback never deletes either (they are not named after any machine).
- A machine's OS disk is a qcow2 overlay whose ``<backingStore>`` is that base volume: created in
  a second, whatever the image's size, and holding only what the machine writes.
- The seed ISO goes into ``<hostname>-cidata``, named like the machine's disks so the rollback
  that removes them removes it too.
"""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from octoprov import deploykey
from octoprov.cloudinit import seed_files
from octoprov.cloudinit.seed import seed_iso
from octoprov.errors import PermanentError, TransientError
from octoprov.targets.libvirt.connection import Connection, Pool, Volume, load_libvirt

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.images import CloudImage

CHUNK = 4 * 1024 * 1024
CHUNKS_BETWEEN_CHECKS = 16  # ask whether the task was cancelled every 64 MiB
# pool types whose volumes are files, which is what a qcow2 overlay with a backing file needs
FILE_POOLS = ("dir", "fs", "netfs")
BASE_PREFIX = "octoprov-image-"
READY_SUFFIX = ".ready"


def base_volume_name(checksum_sha256: str) -> str:
    return f"{BASE_PREFIX}{checksum_sha256.lower()}"


def find_volume(pool: Pool, name: str) -> Volume | None:
    """The volume called ``name`` in ``pool``, or None."""
    libvirt = load_libvirt()
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def volume_xml(name: str, capacity_bytes: int, fmt: str, *, allocation_bytes: int = 0,
               backing_path: str | None = None) -> str:
    """A ``<volume>`` to create; with ``backing_path``, a qcow2 overlay on that (qcow2) volume."""
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity_bytes)
    ET.SubElement(root, "allocation", unit="bytes").text = str(allocation_bytes)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=fmt)
    if backing_path is not None:
        backing = ET.SubElement(root, "backingStore")
        ET.SubElement(backing, "path").text = backing_path
        ET.SubElement(backing, "format", type="qcow2")  # stated, never probed from the file
    return ET.tostring(root, encoding="unicode")


def upload(conn: Connection, volume: Volume, source: BinaryIO, length: int,
           between: Callable[[], None] | None = None) -> None:
    """Write ``length`` bytes of ``source`` into ``volume`` from offset 0 through a libvirt stream,
    calling ``between`` every few chunks (a cancelled task stops there). The stream is aborted if
    anything goes wrong, so the host never keeps a half-open upload."""
    libvirt = load_libvirt()
    stream = conn.newStream(0)
    volume.upload(stream, 0, length, 0)
    try:
        remaining, chunks = length, 0
        while remaining:
            chunks += 1
            if between is not None and chunks % CHUNKS_BETWEEN_CHECKS == 0:
                between()
            block = source.read(min(CHUNK, remaining))
            if not block:
                raise PermanentError(f"the file ended {remaining} bytes short of {length}")
            view = memoryview(block)
            while view:  # a local stream may take less than it is given
                sent = stream.send(bytes(view))
                view = view[sent:]
            remaining -= len(block)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def ensure_base_volume(conn: Connection, pool: Pool, image: CloudImage,
                       check_cancelled: Callable[[], None] | None = None) -> Volume:
    """The pool's base volume of ``image``, uploaded first if the pool has none. Whoever creates the
    volume uploads it; anyone else finding it without its ``.ready`` twin waits (a transient error,
    retried) rather than build on part of an image."""
    libvirt = load_libvirt()
    if not image.checksum_sha256:
        raise PermanentError(f"image {image.image_id} has no SHA-256; register it again")
    kind = ET.fromstring(pool.XMLDesc(0)).get("type")  # noqa: S314 - libvirt's own output
    if kind not in FILE_POOLS:
        raise PermanentError(f"storage pool {pool.name()} is of type {kind}; cloud images need a pool of files "
                             f"({', '.join(FILE_POOLS)}) for their copy-on-write overlays")
    name = base_volume_name(image.checksum_sha256)
    base = find_volume(pool, name)
    if base is not None and find_volume(pool, name + READY_SUFFIX) is not None:
        return base
    busy = TransientError(f"image {image.image_id} is being uploaded to pool {pool.name()} by another task "
                          f"(if no upload is running, delete volume {name} there)")
    if base is not None:
        raise busy
    if not image.path.is_file():
        raise PermanentError(f"image {image.image_id}: {image.path} is not in this worker's images folder")
    try:  # raw: the volume holds the file's bytes as they are; the qcow2 inside is what overlays read
        base = pool.createXML(volume_xml(name, image.size_bytes, "raw"), 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_STORAGE_VOL_EXIST:
            raise busy from None
        raise
    try:
        if check_cancelled:
            check_cancelled()
        with open(image.path, "rb") as source:
            upload(conn, base, source, image.size_bytes, check_cancelled)
        pool.createXML(volume_xml(name + READY_SUFFIX, 0, "raw"), 0)
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            base.delete(0)
        raise
    return base


def put_seed(conn: Connection, pool: Pool, name: str, iso: bytes) -> Volume:
    """Upload the seed ISO into volume ``name``: created, or rewritten when an earlier attempt of the
    same task left it (its upload may not have finished)."""
    volume = find_volume(pool, name)
    if volume is not None and volume.info()[1] != len(iso):
        volume.delete(0)
        volume = None
    if volume is None:
        volume = pool.createXML(volume_xml(name, len(iso), "raw"), 0)
    upload(conn, volume, io.BytesIO(iso), len(iso))
    return volume


def check_os_disk(capacity_bytes: int, image: CloudImage) -> None:
    """An overlay smaller than its image would cut the image's file systems short."""
    if capacity_bytes < image.virtual_size_bytes:
        raise PermanentError(f"the OS disk ({capacity_bytes} bytes) is smaller than cloud image {image.image_id} "
                             f"({image.virtual_size_bytes} bytes)")


def seed_files_for(ctx: TaskContext, mac_address: str) -> dict[str, str]:
    """The files of the task's seed ISO, for the machine whose NIC has ``mac_address``."""
    return seed_files(ctx.spec, task_id=ctx.task_id, mac_address=mac_address, callback_url=ctx.callback_url,
                      callback_token=ctx.callback_token(), deploy_key=deploykey.public_key(ctx.settings))


def seed_for(ctx: TaskContext, mac_address: str) -> bytes:
    """The task's seed ISO, for the machine whose NIC has ``mac_address``."""
    return seed_iso(seed_files_for(ctx, mac_address))
