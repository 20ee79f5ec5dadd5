"""Windows paths given to a Hyper-V host (``vm.storagePath``, a node's installation ISO).

The path reaches Hyper-V's cmdlets over PowerShell remoting. A relative path (``VMs``, ``D:VMs``)
resolves against the remoting session's current folder, a user profile or ``C:\\Windows\\System32``,
so the VM's disks land where nobody looks; characters NTFS cannot name (``|``, ``<``, ``"``, ...),
a name Windows takes for a device (``NUL``) or one whose trailing dot Windows silently drops fail
on the host, after the task has started. Rules from Microsoft's "Naming Files, Paths, and
Namespaces" (https://learn.microsoft.com/windows/win32/fileio/naming-a-file).
"""

from __future__ import annotations

import re

from octoprov.validation.text import text_problem

_DRIVE = re.compile(r"[A-Za-z]:\\")
_FORBIDDEN = '<>:"|?*'  # besides \ (the separator) and / (read as one); control characters are refused before
# device names Windows resolves in every folder, with or without an extension (NUL.txt is NUL)
_DEVICE = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3])", re.IGNORECASE)
_COMPONENT_MAX = 255


def is_device_name(name: str) -> bool:
    """``CON``, ``nul.txt``, ``COM1``: a name Windows reserves for a device, in any folder."""
    return bool(_DEVICE.fullmatch(name.split(".", 1)[0].rstrip(" ")))


def _component_problem(name: str) -> str | None:
    if not name:
        return "has an empty folder name (two backslashes in a row)"
    bad = [char for char in _FORBIDDEN if char in name]
    if bad:
        colon = " (: only after the drive letter)" if ":" in bad else ""
        return f"holds {' '.join(bad)}, which Windows paths cannot{colon}"
    if name in (".", ".."):
        return "must not contain . or .. folders"
    if name.endswith((" ", ".")):
        return "folder names must not end with a space or a dot (Windows drops it)"
    if is_device_name(name):
        return f"{name} is a device name to Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9), not a folder"
    if len(name) > _COMPONENT_MAX:
        return f"folder names must be at most {_COMPONENT_MAX} characters"
    return None


def check_windows_path(value: str, max_len: int = 500) -> str:
    """An absolute Windows path, ``D:\\Hyper-V\\VMs`` or ``\\\\server\\share\\VMs``; returned stripped,
    with forward slashes (which Windows reads as backslashes) written as backslashes."""
    path = value.strip()
    if not path:
        raise ValueError("must not be empty")
    if len(path) > max_len:
        raise ValueError(f"must be at most {max_len} characters")
    problem = text_problem(path)
    if problem:
        raise ValueError(problem)
    path = path.replace("/", "\\")
    if path.startswith("\\\\"):
        components = path[2:].split("\\")
        if len(components) < 2 or not components[0] or not components[1]:
            raise ValueError("a UNC path needs a server and a share: \\\\server\\share\\folder")
        if components[0] in (".", "?"):
            raise ValueError("must be a folder path, not a Windows device path (\\\\.\\ or \\\\?\\)")
    elif _DRIVE.match(path):
        components = path[3:].split("\\") if len(path) > 3 else []
    else:
        raise ValueError("must be an absolute path starting with a drive (D:\\Hyper-V) or a share "
                         "(\\\\server\\share): a relative one resolves against the remoting session's folder")
    if components and not components[-1]:
        components.pop()  # a trailing backslash
    for name in components:
        problem = _component_problem(name)
        if problem:
            raise ValueError(problem)
    return path
