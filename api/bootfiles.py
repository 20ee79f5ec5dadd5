"""Boot files over HTTP for machines being provisioned: the images and drivers folders, the
EFI boot loaders UEFI HTTP boot firmware loads, and the media of a task installing by virtual media
(for the BMC, under the task's secret media token, while the task is active).

Open like the spec's file server (firmware and WinPE send no API token), read-only, with
Range requests (a WIM is several GB and iPXE resumes), no directory listing, and no way out
of the folder (``..``, absolute paths and symlinks pointing outside are refused).

A single byte range is answered from the file positioned at its start, wrapped in the
server's ``wsgi.file_wrapper`` with the range's length declared: gunicorn then sends it
with ``sendfile`` instead of copying it through Python. Other requests go to Flask's
``send_file`` (whole files, conditional requests; several ranges get the whole file).
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_file
from sqlalchemy import select
from werkzeug.http import http_date

from api.runtime import runtime
from octoprov import digests
from octoprov.byterange import bounds, one_range
from octoprov.models import Task
from octoprov.netboot import grub
from octoprov.netboot.bootconfig import files_token_hash
from octoprov.paths import confined
from octoprov.targets import virtualmedia

bootfiles = Blueprint("bootfiles", __name__, url_prefix="/boot")


def _serve(root: Path, path: str) -> Response:
    try:
        target = confined(root, path)
    except ValueError:
        abort(404)
    if not target.is_file():
        abort(404)
    asked = one_range(request.headers.get("Range", ""))
    if asked and not request.headers.get("If-Range"):
        return _one_range(target, *asked)
    # several ranges: RFC 9110 lets a server ignore Range and send the whole file (werkzeug would refuse)
    several = "," in request.headers.get("Range", "")
    return _with_digest(send_file(target, conditional=not several, max_age=0, mimetype="application/octet-stream"),
                        target)


def _with_digest(response: Response, target: Path) -> Response:
    """The file's SHA-256 for a site's edge, which checks what it caches, when it asks (Want-Digest)."""
    if response.status_code == 200 and digests.wants_sha256(request.headers.get(digests.WANT)):
        response.headers[digests.HEADER] = digests.header_value(digests.sha256_file(target))
    return response


def _one_range(target: Path, first: str, last: str) -> Response:
    size = target.stat().st_size
    found = bounds(first, last, size)
    if found is None:
        return Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = found
    handle = open(target, "rb")  # noqa: SIM115 - closed by the server through the file wrapper
    handle.seek(start)
    wrapper = request.environ.get("wsgi.file_wrapper")
    body = wrapper(handle, 1 << 20) if wrapper else _limited(handle, end - start + 1)
    response = Response(body, status=206, mimetype="application/octet-stream", direct_passthrough=True)
    response.headers.update({
        "Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(end - start + 1),
        "Accept-Ranges": "bytes", "Last-Modified": http_date(target.stat().st_mtime),
    })
    return response


def _limited(handle: BufferedReader, length: int) -> Iterator[bytes]:
    """The range from a server without a file wrapper: read in chunks, stop at its end."""
    try:
        while length > 0:
            chunk = handle.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


@bootfiles.get("/images/<path:path>")
def image_file(path: str) -> Response:
    return _serve(runtime().settings.effective_images_dir, path)


@bootfiles.get("/drivers/<path:path>")
def driver_file(path: str) -> Response:
    return _serve(runtime().settings.effective_drivers_dir, path)


@bootfiles.get("/efi/<name>")
def efi_file(name: str) -> Response:
    """The EFI boot loaders for UEFI HTTP boot (firmware loads one binary from a URL), by name only:
    iPXE from OCTOPROV_IPXE_DIR, shim and the signed GRUB from OCTOPROV_SIGNED_BOOT_DIR."""
    settings = runtime().settings
    sources = {"ipxe.efi": settings.ipxe_dir / "ipxe.efi", "snponly.efi": settings.ipxe_dir / "snponly.efi",
               **{file: settings.signed_boot_dir / relative for file, relative in grub.SIGNED_SOURCES.items()}}
    source = sources.get(name)
    if source is None or not source.is_file():  # Debian's ipxe.efi is a link into /boot: followed, by name only
        abort(404)
    return _with_digest(send_file(source.resolve(), mimetype="application/efi", conditional=True, max_age=0),
                        source.resolve())


@bootfiles.get("/media/<token>/<name>")
def task_medium(token: str, name: str) -> Response:
    """What the BMC inserts into its virtual drives (boot.iso, answers.img); 404 once the task ended or
    minted a newer token."""
    settings = runtime().settings
    with runtime().database.session() as session:
        task = session.scalars(select(Task).where(Task.media_token_hash == files_token_hash(token))).first()
        medium = virtualmedia.served_medium(session, settings, task, name)
    if medium is None:
        abort(404)
    return _serve(medium.parent, medium.name)
