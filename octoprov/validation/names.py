"""Names people give things: script files, parameters, and display names.

Script names become file names on the target, and parameter names become PowerShell
parameters, so both are kept to a character set that needs no quoting anywhere.
"""

from __future__ import annotations

import re
import unicodedata

_SCRIPT_NAME = re.compile(r"[A-Za-z0-9._-]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_script_name(name: str) -> str:
    """A file name in a script library folder, e.g. ``Configure-Firewall.ps1``."""
    if "/" in name or "\\" in name:
        raise ValueError("must be a file name, not a path")
    if not 1 <= len(name) <= 100:
        raise ValueError("must be 1 to 100 characters")
    if not _SCRIPT_NAME.fullmatch(name):
        raise ValueError("may contain only letters, digits, dots, hyphens and underscores")
    if name.startswith("."):
        raise ValueError("must not start with a dot")
    return name


def check_parameter_name(name: str) -> str:
    """A script or package parameter name, e.g. ``instanceName``."""
    if not 1 <= len(name) <= 64:
        raise ValueError("must be 1 to 64 characters")
    if not _PARAMETER_NAME.fullmatch(name):
        raise ValueError("must start with a letter or underscore and contain only letters, digits and underscores")
    return name


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def check_display_name(name: str, max_len: int = 255) -> str:
    """A single line of free text (a template name, a vSwitch, a path); returned stripped."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("must not be empty")
    if len(stripped) > max_len:
        raise ValueError(f"must be at most {max_len} characters")
    if has_control_characters(stripped):
        raise ValueError("must not contain control characters")
    return stripped
