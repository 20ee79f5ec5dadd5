"""Library records for API tests: packages with a parameter schema, a tiny Linux image, and a POST that
must store."""

from __future__ import annotations

import copy
from pathlib import Path

API = "/api/v1/provisioning"
PACKAGES = f"{API}/packages"

SQL_SCHEMA = {
    "type": "object",
    "properties": {
        "instanceName": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,15}$", "description": "SQL instance"},
        "port": {"type": "integer", "minimum": 1024, "maximum": 65535, "default": 1433},
        "edition": {"type": "string", "enum": ["Developer", "Standard"], "default": "Developer"},
        "mixedAuth": {"type": "boolean", "default": False},
    },
    "required": ["instanceName"],
}


def windows_package(name: str = "SQL Server 2022", **changes) -> dict:
    """A Windows package with one required and three defaulted parameters."""
    return {"name": name, "description": "Unattended SQL Server setup", "osType": "windows",
            "script": "param([string]$instanceName, [int]$port, [string]$edition, [bool]$mixedAuth)\n"
                      "& D:\\setup.exe /Q /INSTANCENAME=$instanceName\n",
            "parametersSchema": copy.deepcopy(SQL_SCHEMA), "idempotent": True, "timeoutSeconds": 3600, **changes}


def linux_package(name: str = "nginx", **changes) -> dict:
    return {"name": name, "osType": "linux", "script": "apt-get install -y nginx\n", **changes}


def created(client, resource: str, body: dict) -> dict:
    """POST ``body`` to /provisioning/<resource>, which must store it; what was stored."""
    response = client.post(f"{API}/{resource}", json=body)
    assert response.status_code == 201, response.json
    return response.json


def tiny_linux_image(client, images_dir: Path, kernel_args: str | None = None) -> int:
    """A Linux image with an installer kernel and initrd (stand-in bytes under ``images_dir``/tiny),
    registered through the API; its id."""
    folder = images_dir / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vmlinuz", "initrd.gz", "root.img"):
        (folder / name).write_bytes(name.encode() * 1000)
    body = {"name": "Tiny Linux", "osType": "linux", "imagePath": "tiny/root.img", "kernelPath": "tiny/vmlinuz",
            "initrdPath": "tiny/initrd.gz", **({"kernelArgs": kernel_args} if kernel_args else {})}
    return created(client, "images", body)["id"]


def winpe_image(client, images_dir: Path) -> int:
    """A Windows image with WinPE beside it (boot.wim, BCD, boot.sdi; stand-in bytes), registered; its id."""
    media = images_dir / "winpe"
    (media / "sources").mkdir(parents=True)
    for name in ("sources/boot.wim", "sources/BCD", "sources/boot.sdi", "install.wim"):
        (media / name).write_bytes(b"x")
    return created(client, "images", {"name": "WS2025", "osType": "windows", "imagePath": "winpe/install.wim",
                                      "bootWimPath": "winpe/sources/boot.wim"})["id"]

