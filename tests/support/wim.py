"""Real multi-image WIMs built with wimlib, with the metadata Setup reads."""

from __future__ import annotations

import subprocess

EDITIONS = [
    ("Windows Server 2025 Standard", "ServerStandardCore", "Server Core"),
    ("Windows Server 2025 Standard (Desktop Experience)", "ServerStandard", "Server"),
    ("Windows Server 2025 Datacenter (Desktop Experience)", "ServerDatacenter", "Server"),
]


def build_wim(path, tmp_path):
    """Three editions, each with the WINDOWS metadata Setup reads (edition, arch, version, language)."""
    for index, (name, edition_id, installation) in enumerate(EDITIONS, start=1):
        content = tmp_path / f"edition{index}"
        (content / "Windows/System32").mkdir(parents=True)
        (content / "Windows/System32/edition.txt").write_text(edition_id * index)
        verb = "capture" if index == 1 else "append"
        subprocess.run(["wimlib-imagex", verb, str(content), str(path), name], check=True, capture_output=True)
        properties = {"WINDOWS/EDITIONID": edition_id, "WINDOWS/INSTALLATIONTYPE": installation,
                      "WINDOWS/ARCH": "9", "WINDOWS/VERSION/MAJOR": "10", "WINDOWS/VERSION/MINOR": "0",
                      "WINDOWS/VERSION/BUILD": "26100", "WINDOWS/VERSION/SPBUILD": "1742",
                      "WINDOWS/LANGUAGES/LANGUAGE": "en-US", "DISPLAYNAME": name}
        args = [arg for key, value in properties.items() for arg in ("--image-property", f"{key}={value}")]
        subprocess.run(["wimlib-imagex", "info", str(path), str(index), *args], check=True, capture_output=True)
