"""Fixed PowerShell scripts, kept as ``.ps1`` files in a ``scripts`` folder beside the code that
runs them (as the iPXE scripts and answer templates are files), so they read, diff and lint as
PowerShell. A script's text is sent as stored; values never go into it, they are bound to its
``param()`` block. The folders ship as package data (setup.cfg)."""

from __future__ import annotations

import functools
import importlib.resources

FOLDER = "scripts"
SUFFIX = ".ps1"


@functools.cache
def script_text(package: str, name: str) -> str:
    """The text of ``<package>/scripts/<name>.ps1``, read once per process."""
    return (importlib.resources.files(package) / FOLDER / f"{name}{SUFFIX}").read_text(encoding="utf-8")


def scripts(package: str) -> dict[str, str]:
    """Every fixed script of ``package``, by name."""
    folder = importlib.resources.files(package) / FOLDER
    names = sorted(entry.name[:-len(SUFFIX)] for entry in folder.iterdir() if entry.name.endswith(SUFFIX))
    return {name: script_text(package, name) for name in names}
