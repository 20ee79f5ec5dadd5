"""Windows product keys: a malformed key stops Setup at the key prompt, on a machine nobody watches.

Keys use 24 characters that cannot be confused with each other; keys since Windows 8
may also hold one ``N`` (its position encodes part of the key), as in
``VDYBN-27WPP-V4HQT-9VMD4-VMK7H``.
"""

from __future__ import annotations

import re

ALPHABET = "BCDFGHJKMPQRTVWXY2346789"
_KEY = re.compile(rf"[{ALPHABET}N]{{5}}(?:-[{ALPHABET}N]{{5}}){{4}}", re.IGNORECASE | re.ASCII)
_FORMAT = (
    "expected five groups of five characters separated by hyphens, like VDYBN-27WPP-V4HQT-9VMD4-VMK7H "
    "(no A, E, I, L, O, S, U, Z, 0, 1 or 5, and at most one N)"
)


def check_product_key(value: str) -> str:
    """Return the key upper-cased. The message never repeats the key: it is a secret."""
    if not _KEY.fullmatch(value) or value.upper().count("N") > 1:
        raise ValueError(_FORMAT)
    key = value.upper()
    if len(set(key.replace("-", ""))) == 1:
        raise ValueError("is a placeholder such as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX, not a product key")
    return key
