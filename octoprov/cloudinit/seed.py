"""The NoCloud seed: an ISO 9660 image labelled ``cidata`` holding ``user-data``, ``meta-data`` and
``network-config``, which cloud-init finds on any attached drive at first boot.

Written in Python with pycdlib (no genisoimage or xorriso on the worker or the host). Plain
ISO 9660 names are upper case without dashes, so the files also get Rock Ridge names (what
Linux's isofs reads) and Joliet names (what blkid and other systems read), both as cloud-init
expects them. The volume label is set in both the primary and the Joliet descriptor.
"""

from __future__ import annotations

import io

import pycdlib

LABEL = "cidata"
FILES = ("user-data", "meta-data", "network-config")


def _iso9660_name(name: str) -> str:
    """``user-data`` → ``/USER_DATA.;1``: the name ISO 9660 level 3 allows (d-characters)."""
    return "/" + name.upper().replace("-", "_") + ".;1"


def seed_iso(files: dict[str, str]) -> bytes:
    """The seed image holding ``files`` (name → UTF-8 text); only the NoCloud names are allowed."""
    unknown = set(files) - set(FILES)
    if unknown:
        raise ValueError(f"not a NoCloud seed file: {', '.join(sorted(unknown))}")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL, app_ident_str="Octoprov")
    try:
        for name, text in files.items():
            data = text.encode("utf-8")
            iso.add_fp(io.BytesIO(data), len(data), _iso9660_name(name), rr_name=name, joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()

