"""Boot files over HTTP for machines being provisioned: the images and drivers folders.

Open like the spec's file server (firmware and WinPE send no API token), read-only, with
Range requests (a WIM is several GB and iPXE resumes), no directory listing, and no way out
of the folder (``..``, absolute paths and symlinks pointing outside are refused).
"""

from __future__ import annotations

from flask import Blueprint, abort, send_file

from api.runtime import runtime
from octoprov.paths import confined

bootfiles = Blueprint("bootfiles", __name__, url_prefix="/boot")


def _serve(root, path: str):
    try:
        target = confined(root, path)
    except ValueError:
        abort(404)
    if not target.is_file():
        abort(404)
    return send_file(target, conditional=True, max_age=0, mimetype="application/octet-stream")


@bootfiles.get("/images/<path:path>")
def image_file(path: str):
    return _serve(runtime().settings.effective_images_dir, path)


@bootfiles.get("/drivers/<path:path>")
def driver_file(path: str):
    return _serve(runtime().settings.effective_drivers_dir, path)
