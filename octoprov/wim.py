"""Reading the editions inside a Windows image (WIM) with wimlib.

A WIM holds several editions (Standard, Datacenter, with or without Desktop Experience);
a task installs one by index. The metadata is the XML Windows stores in the WIM, read
with ``wimlib-imagex info --xml`` and parsed with defusedxml, since the file comes from
users and its XML must not be trusted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from defusedxml import DefusedXmlException, ElementTree

from octoprov.errors import Conflict, NotAvailable
from octoprov.specs import View

# WINDOWS/ARCH in a WIM's XML: the PROCESSOR_ARCHITECTURE_* constants of Windows
ARCHITECTURES = {"0": "x86", "5": "arm", "9": "x64", "12": "arm64"}
SCAN_TIMEOUT_S = 300


class Edition(View):
    index: int
    name: str
    description: str | None = None
    display_name: str | None = None
    edition_id: str | None = None
    installation_type: str | None = None
    architecture: str | None = None
    version: str | None = None
    languages: list[str] = []
    size_bytes: int | None = None


def read_editions(path: Path) -> list[Edition]:
    tool = shutil.which("wimlib-imagex")
    if tool is None:
        raise NotAvailable("wimlib-imagex is not installed (Debian package wimtools)")
    result = subprocess.run([tool, "info", str(path), "--xml"], capture_output=True, timeout=SCAN_TIMEOUT_S)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unreadable"]
        raise Conflict(f"not a readable WIM file: {reason[0]}")
    return parse_wim_xml(result.stdout)


def parse_wim_xml(raw: bytes) -> list[Edition]:
    """The editions described by a WIM's XML (UTF-16 with a byte order mark, as Windows writes it)."""
    try:
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8")
        root = ElementTree.fromstring(text)
    except (UnicodeDecodeError, ElementTree.ParseError, DefusedXmlException) as exc:
        raise Conflict(f"the WIM's metadata is not usable XML: {exc}") from None
    editions = []
    for image in root.findall("IMAGE"):
        windows = image.find("WINDOWS")
        version = None
        if windows is not None and windows.find("VERSION") is not None:
            parts = [windows.findtext(f"VERSION/{p}") for p in ("MAJOR", "MINOR", "BUILD", "SPBUILD")]
            version = ".".join(p for p in parts if p)
        size = image.findtext("TOTALBYTES")
        editions.append(Edition(
            index=int(image.get("INDEX", "0")),
            name=image.findtext("NAME") or "",
            description=image.findtext("DESCRIPTION"),
            display_name=image.findtext("DISPLAYNAME"),
            edition_id=(windows.findtext("EDITIONID") if windows is not None else None) or image.findtext("FLAGS"),
            installation_type=windows.findtext("INSTALLATIONTYPE") if windows is not None else None,
            architecture=ARCHITECTURES.get(windows.findtext("ARCH") or "") if windows is not None else None,
            version=version or None,
            languages=[lang.text for lang in image.findall("WINDOWS/LANGUAGES/LANGUAGE") if lang.text],
            size_bytes=int(size) if size and size.isdigit() else None,
        ))
    return sorted(editions, key=lambda e: e.index)
