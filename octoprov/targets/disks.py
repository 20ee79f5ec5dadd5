"""The names of a machine's disks, the same on every hypervisor: the OS disk first, each named after
the machine and its purpose, numbered only where a purpose repeats (``web01-os``, ``web01-data-1``,
``web01-data-2``). Rollback finds a machine's disks by that ``<hostname>-`` prefix."""

from __future__ import annotations

from collections import Counter


def named_disks(hostname: str, disks: list[dict]) -> list[tuple[str, dict]]:
    """``(name, disk)`` for each disk of the request (camelCase dicts), the OS disk first."""
    ordered = sorted(disks, key=lambda disk: disk.get("purpose") != "os")  # stable: the rest keep their order
    total = Counter(disk.get("purpose", "data") for disk in ordered)
    numbered: Counter = Counter()
    named = []
    for disk in ordered:
        purpose = disk.get("purpose", "data")
        numbered[purpose] += 1
        named.append((f"{hostname}-{purpose}" + (f"-{numbered[purpose]}" if total[purpose] > 1 else ""), disk))
    return named
