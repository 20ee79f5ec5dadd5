"""The names of a machine's disks, the same on every hypervisor: the OS disk first, each named after
the machine and its purpose, numbered only where a purpose repeats (``web01-os``, ``web01-data-1``,
``web01-data-2``). Rollback finds a machine's disks by that ``<hostname>-`` prefix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octoprov.taskspec import DiskSpec


def named_disks(hostname: str, disks: Sequence[DiskSpec]) -> list[tuple[str, DiskSpec]]:
    """``(name, disk)`` for each disk of the request, the OS disk first."""
    ordered = sorted(disks, key=lambda disk: disk.purpose != "os")  # stable: the rest keep their order
    total = Counter(disk.purpose for disk in ordered)
    numbered: Counter[str] = Counter()
    named = []
    for disk in ordered:
        numbered[disk.purpose] += 1
        suffix = f"-{numbered[disk.purpose]}" if total[disk.purpose] > 1 else ""
        named.append((f"{hostname}-{disk.purpose}{suffix}", disk))
    return named
