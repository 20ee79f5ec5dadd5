"""Case-insensitive lookup in a fixed list of names, suggesting the closest ones on a miss.

Windows answers a misspelt language or time zone only with a failed setup hours later,
so a typo has to be caught, and corrected, when the request comes in.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Vocabulary:
    def __init__(self, words: Iterable[str], what: str):
        self.words = frozenset(words)
        self.what = what
        self._canonical = {word.lower(): word for word in self.words}

    def lookup(self, value: str) -> str:
        """Return the canonical spelling of ``value``; raise ``ValueError`` if it is unknown."""
        try:
            return self._canonical[value.lower()]
        except KeyError:
            pass
        close = difflib.get_close_matches(value.lower(), self._canonical, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(self._canonical[c] for c in close)}?" if close else ""
        raise ValueError(f"not a known {self.what}{hint}")
