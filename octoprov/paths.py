"""Confining user-supplied paths to a library folder (images, drivers).

Library paths are portable ASCII (letters, digits, space and ``._()+-/``): the same files are
later served over HTTP, TFTP and SMB to iPXE and WinPE, which handle other names badly.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

LIBRARY_PATH_PATTERN = r"^[A-Za-z0-9._()+ /-]+$"
NAME_MAX = 255  # longest file name component on Linux file systems


def confined(root: Path, value: str) -> Path:
    """Resolve ``value`` (relative to ``root``, or absolute inside it) and refuse escapes.

    Symlinks are resolved before the check, so a link pointing out of ``root`` is refused too.
    """
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty path")
    if any(len(part.encode()) > NAME_MAX for part in Path(value).parts):
        raise ValueError(f"each folder or file name must be at most {NAME_MAX} bytes")
    root = Path(root).resolve()
    candidate = Path(value)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise ValueError(f"must be inside the library folder {root}")
    return resolved


def relative_name(root: Path, path: Path) -> str:
    """How a confined path is stored: POSIX form relative to its library folder."""
    return str(PurePosixPath(Path(path).resolve().relative_to(Path(root).resolve())))
