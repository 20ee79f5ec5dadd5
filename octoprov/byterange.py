"""HTTP Range requests for boot files (RFC 9110): one byte range, as iPXE and curl send them to resume a
download. Shared by the central boot-file route and a site's edge, so both answer the same way."""

from __future__ import annotations

import re

_ONE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def one_range(header: str) -> tuple[str, str] | None:
    """The first and last byte of a single range (either may be empty: ``500-``, ``-500``); None for no range
    or several (a server may answer those with the whole file)."""
    match = _ONE_RANGE.match(header.strip())
    if not match or not match.group(1) + match.group(2):
        return None
    return match.group(1), match.group(2)


def bounds(first: str, last: str, size: int) -> tuple[int, int] | None:
    """The range's first and last byte in a file of ``size`` bytes; None when it cannot be satisfied (416)."""
    if first:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    else:  # a suffix range: the last N bytes
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        return None
    return start, end
