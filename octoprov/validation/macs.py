"""MAC addresses: bare-metal tasks are matched to the PXE-booting machine by its MAC.

People paste MACs from Hyper-V (``00-15-5D-...``), Cisco switches (``0015.5d01.0203``)
or BIOS screens (``00155D010203``); we store one spelling so that lookups match.
"""

from __future__ import annotations

import functools
import re

_FORMATS = [
    re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", re.IGNORECASE | re.ASCII),
    re.compile(r"[0-9a-f]{2}(?:-[0-9a-f]{2}){5}", re.IGNORECASE | re.ASCII),
    re.compile(r"[0-9a-f]{4}(?:\.[0-9a-f]{4}){2}", re.IGNORECASE | re.ASCII),
    re.compile(r"[0-9a-f]{12}", re.IGNORECASE | re.ASCII),
]


def canonical_mac(value: str) -> str:
    """Return ``value`` as lowercase colon-separated octets, e.g. ``00:15:5d:01:02:03``. The last few thousand
    spellings of MAC length are remembered: in a boot storm the same machines ask again and again (a refused
    spelling raises every time, and a longer text, no MAC anyway, is never kept)."""
    if isinstance(value, str) and len(value) <= LONGEST_SPELLING:
        return _remembered(value)
    return _canonical(value)


LONGEST_SPELLING = 17  # 00:15:5d:01:02:03


@functools.lru_cache(maxsize=4096)
def _remembered(value: str) -> str:
    return _canonical(value)


def _canonical(value: str) -> str:
    if not any(pattern.fullmatch(value) for pattern in _FORMATS):
        raise ValueError("not a MAC address; use 00:15:5d:01:02:03, 00-15-5d-01-02-03, 0015.5d01.0203 or 00155d010203")
    digits = re.sub(r"[^0-9a-f]", "", value.lower())
    mac = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if digits == "f" * 12:
        raise ValueError(f"{mac} is the broadcast address, not a network card's")
    if digits == "0" * 12:
        raise ValueError(f"{mac} is the all-zero address, not a network card's")
    if int(digits[:2], 16) & 1:
        raise ValueError(f"{mac} is a multicast address (lowest bit of the first octet set), not a network card's")
    return mac
